"""The layers point one way (web -> ra -> distribution -> ca -> pki/token/store),
read from the imports of every module (ast, nothing imported)."""
from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial import unittest

import estappliance

ROOT = Path(estappliance.__file__).parent
# Lower imports higher, never the other way. config, errors and threads are
# for everyone (so are metrics and progress); service, workers, ops, admin (estctl) and client (est) sit on top.
RANK = {"web": 0, "ra": 1, "distribution": 2, "ca": 3, "pki": 4, "token": 4, "store": 4}
TOP = {"service", "workers", "admin", "client", "ops"}
# Known and left: the store checks a package's PAL type against the registry
# (a table of pure data) when it queues it.
ALLOWED = {("store/package_tables.py", "estappliance.distribution.types")}


def imports(path: Path) -> set[str]:
    """Absolute names of everything a module imports (also inside functions)."""
    package = ["estappliance", *path.relative_to(ROOT).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.add(node.module)
                continue
            base = package[:len(package) - node.level + 1]
            if node.module:
                found.add(".".join([*base, node.module]))
            else:
                found.update(".".join([*base, alias.name]) for alias in node.names)
    return found


def layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "estappliance" and len(parts) > 1 else None


class LayerTests(unittest.TestCase):
    def modules(self):
        for path in sorted(ROOT.rglob("*.py")):
            yield str(path.relative_to(ROOT)), path.relative_to(ROOT).parts[0].removesuffix(".py"), imports(path)

    def test_only_web_imports_twisted_web_and_only_token_imports_pkcs11(self):
        wrong = [(module, name) for module, own, names in self.modules() for name in names
                 if (name.startswith("twisted.web") and own != "web")
                 or (name.split(".")[0] == "pkcs11" and own != "token")]
        self.assertEqual(wrong, [])

    def test_web_never_reaches_the_token_or_the_store(self):
        wrong = [(module, name) for module, own, names in self.modules() if own == "web" for name in names
                 if layer(name) in ("token", "store")]
        self.assertEqual(wrong, [])

    def test_layers_point_one_way(self):
        wrong = []
        for module, own, names in self.modules():
            for name in names:
                target = layer(name)
                if own not in RANK or target is None or target == own or (module, name) in ALLOWED:
                    continue
                if target in TOP or (target in RANK and RANK[target] <= RANK[own]):
                    wrong.append((module, name))
        self.assertEqual(wrong, [])

    def test_the_rules_see_a_violation(self):
        """The checks read relative imports right (else they would pass on anything)."""
        names = imports(ROOT / "store" / "package_tables.py")
        self.assertIn("estappliance.distribution.types", names)
        self.assertIn("estappliance.errors", names)
        self.assertIn("estappliance.token.session", imports(ROOT / "token" / "keys.py"))

    def test_every_pki_error_is_a_pki_error(self):
        """One base for the pure layer's errors: a caller catches PkiError."""
        import importlib
        import inspect
        import pkgutil

        from estappliance import pki
        from estappliance.pki.errors import PkiError
        stray = []
        for info in pkgutil.iter_modules(pki.__path__):
            module = importlib.import_module(f"estappliance.pki.{info.name}")
            stray += [f"{info.name}.{name}" for name, value in vars(module).items()
                      if inspect.isclass(value) and issubclass(value, Exception) and value.__module__ == module.__name__
                      and not issubclass(value, PkiError)]
        self.assertEqual(stray, [])

