"""Operating the appliance: health, logs, metrics, backup, reload.

Sits on top with ``service``: it reads every layer below and nothing below
imports it (the web layer gets plain callables from the service).
"""
