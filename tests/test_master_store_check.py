"""``twistd est`` with workers: the master opens the store once before it
starts them, so a store at an older schema stops the node at start (and
says ``estctl store migrate``) instead of each worker failing and being
restarted for ever."""
from __future__ import annotations

from pathlib import Path

from twisted.trial import unittest

from estappliance import service
from estappliance.store import Store
from estappliance.store.database import SchemaMismatch

from . import support


class MasterChecksTheSchemaTests(unittest.TestCase):
    def setUp(self):
        state = Path(self.mktemp())
        self.config = support.config(state, server={"workers": 2})
        self.config.ca.cert_file.parent.mkdir(parents=True, exist_ok=True)
        self.config.ca.cert_file.write_text("not read before the store is checked\n")
        store = Store(self.config.store)
        store.db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
        store.close()
        self.patch(service, "load", lambda path: self.config)
        self.started = []
        self.patch(service.WorkerPool, "__init__", lambda pool, *a: self.started.append(a))

    def test_older_schema_refused_before_any_worker(self):
        options = service.Options()
        options.parseOptions(["-c", str(self.config.path)])
        err = self.assertRaises((SchemaMismatch, SystemExit), service.makeService, options)
        self.assertIn("estctl store migrate", str(err))
        self.assertEqual(self.started, [])
