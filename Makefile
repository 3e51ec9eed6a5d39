# Two commands do everything on a fresh Debian machine (as root):
#   make run    venv + deps + SoftHSM2 token + CA under var/, then twistd -n est
#   make test   the same set-up (and a JDK with Bouncy Castle for the interop tests),
#               then mypy (configured in pyproject.toml) and the whole trial suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= etc/estappliance.toml
SOFTHSM_LIB := /usr/lib/softhsm/libsofthsm2.so
APT_STAMP := .venv/.apt-ok
TEST_APT_STAMP := .venv/.apt-test-ok
# Installs the apt packages named in $$missing, if any.
APT_INSTALL = if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	fi

.PHONY: run test deps system test-system venv token ca bench clean

# What the appliance needs. The Makefile is a prerequisite of both stamps so
# that a check added here runs on an existing checkout too.
system: $(APT_STAMP)
$(APT_STAMP): Makefile
	@missing=""; \
	[ -e $(SOFTHSM_LIB) ] && command -v softhsm2-util >/dev/null || missing="$$missing softhsm2"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	$(APT_INSTALL)
	@mkdir -p $(VENV) && touch $@

# What only the tests need: a JDK and Bouncy Castle's EST client (tests/interop),
# opencryptoki's soft token, a second real PKCS#11 token (tests/test_e2e_opencryptoki.py),
# and PostgreSQL's server binaries (tests/postgres_server.py runs its own cluster; the
# package's own "main" cluster is not used).
test-system: $(TEST_APT_STAMP)
$(TEST_APT_STAMP): Makefile | $(APT_STAMP)
	@missing=""; \
	for jar in bcprov bcpkix bcutil bctls; do \
	  [ -e /usr/share/java/$$jar.jar ] || missing="$$missing lib$$jar-java"; \
	done; \
	command -v javac >/dev/null && command -v java >/dev/null || missing="$$missing default-jdk-headless"; \
	command -v pkcsslotd >/dev/null && ls /usr/lib/*/opencryptoki/libopencryptoki.so.0 >/dev/null 2>&1 \
	  || missing="$$missing opencryptoki"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	$(APT_INSTALL)
	@touch $@

venv: $(BIN)/twistd
$(BIN)/twistd: setup.cfg pyproject.toml | $(APT_STAMP)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat
	@touch $@

deps: system venv

token: deps
	@bash softhsm/init-token.sh var

var/ca/ca.pem: | token
	$(BIN)/estctl -c $(CONFIG) init

ca: token var/ca/ca.pem

var/demo.password: | ca
	@umask 077; od -An -N12 -tx1 /dev/urandom | tr -d ' \n' > $@
	@$(BIN)/estctl -c $(CONFIG) client add demo --password-file $@ --labels '*'

run: ca var/demo.password
	@echo ""
	@echo "EST server on https://127.0.0.1:8443/.well-known/est/ (Ctrl-C stops it)"
	@echo "Enroll a device (client 'demo', password in var/demo.password):"
	@echo "  $(BIN)/est enroll --server https://127.0.0.1:8443 --anchor var/ca/ca.pem \\"
	@echo "      --user demo --password-file var/demo.password --subject 'CN=device-1' --key-out device.key -o device.pem"
	@echo "or with curl + openssl:"
	@echo "  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout device.key -subj /CN=device-1 -outform DER | base64 > device.csr.b64"
	@echo "  curl --cacert var/ca/ca.pem -u demo:\$$(cat var/demo.password) -H 'Content-Type: application/pkcs10' \\"
	@echo "      --data-binary @device.csr.b64 https://127.0.0.1:8443/.well-known/est/simpleenroll | base64 -d > device.p7"
	@echo "  openssl pkcs7 -inform DER -in device.p7 -print_certs"
	@echo ""
	@$(BIN)/estctl -c $(CONFIG) store migrate
	$(BIN)/twistd -n --pidfile= est -c $(CONFIG)

test: deps test-system
	@mkdir -p var
	$(BIN)/mypy
	@set -o pipefail; $(BIN)/trial --temp-directory=var/_trial_temp $(TRIAL_ARGS) tests 2>&1 | tee var/trial.log; \
	status=$$?; $(BIN)/python -m tests.summary var/trial.log; exit $$status

# The issue-7 and issue-13 scenarios, each against a fresh server with its own token
# (a few minutes; scenario 5 prefills a store with a million certificates, ~850 MB;
# 7-9 run PostgreSQL clusters of their own: its binaries come with test-system).
# Text figures on the terminal and in var/bench.txt, a picture of them in var/bench.png.
bench: deps test-system
	@mkdir -p var
	set -o pipefail; $(BIN)/python -m bench --suite --plot var/bench.png | tee var/bench.txt

clean:
	rm -rf $(VENV) var build *.egg-info
