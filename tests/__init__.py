"""estappliance tests (trial). tests/support.py builds real tokens and listeners."""
