"""Every module of estappliance has its place, and imports point down.
Read from the imports of every module (ast: nothing is imported), function
bodies included.

    processes and tools  service, worker_process, worker_pool, handoff, ops, admin (estctl)
                         import any layer; client (est) only the foundation
    web                  HTTP: routes, media types, TLS
     -> ra               who asks, may they, approvals, refusals
         -> distribution RFC 8295 packages and the PAL
         -> ca           certificates, CRLs, CMS content, CA ceremonies
             -> token    PKCS#11 (the only importer of pkcs11)
             -> store    what must survive (ra, distribution and ca keep their
                         records there)
    foundation           config, errors, files, threads, metrics, progress,
                         http_digest and pki (pure: bytes in, bytes out):
                         importable from everywhere, importing only each other

An import that jumps over a layer the picture connects (web -> ca) is a
skip; one that points up or sideways is wrong. Both fail unless ALLOWED says
why. Inside a package, modules import each other without a cycle.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

from twisted.trial import unittest

import estappliance

ROOT = Path(estappliance.__file__).parent
FOUNDATION = {"config", "errors", "files", "threads", "metrics", "progress", "http_digest", "pki"}
# Each service layer and the layers it imports directly.
DOWN = {
    "web": {"ra"},
    "ra": {"distribution", "ca", "store"},
    "distribution": {"ca", "token", "store"},
    "ca": {"token", "store"},
    "token": set(),
    "store": set(),
}
TOP = {"service", "worker_process", "worker_pool", "handoff", "ops", "admin", "client"}
# The EST client is a separate program: the server's layers are not its to use.
CLIENT_LAYERS = FOUNDATION
# (module, imported name): why this import may cross the rules.
ALLOWED: dict[tuple[str, str], str] = {}


def imports(path: Path) -> set[str]:
    """Absolute names of everything a module imports (also inside functions);
    ``from pkg import name`` yields ``pkg`` and ``pkg.name``."""
    package = ["estappliance", *path.relative_to(ROOT).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base_name = node.module or ""
            else:
                base = package[:len(package) - node.level + 1]
                base_name = ".".join([*base, node.module] if node.module else base)
            found.add(base_name)
            found.update(f"{base_name}.{alias.name}" for alias in node.names)
    return found


def layer(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "estappliance" and len(parts) > 1 else None


def below(own: str) -> set[str]:
    """Every service layer reachable from ``own`` through DOWN."""
    seen: set[str] = set()
    todo = list(DOWN.get(own, ()))
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(DOWN[name])
    return seen


def modules():
    """(path relative to estappliance/, its layer, what it imports)."""
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        yield str(rel), rel.parts[0].removesuffix(".py"), imports(path)


def module_name(path: Path) -> str:
    parts = ["estappliance", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def verdict(own: str, target: str) -> str | None:
    """None if a module of layer ``own`` may import layer ``target``, else why not."""
    if target == own or target in FOUNDATION:
        return None
    if own in FOUNDATION:
        return "a foundation module imports only the foundation"
    if own == "client":
        return None if target in CLIENT_LAYERS else "the EST client uses only the foundation"
    if own in TOP:
        return None
    if target in TOP:
        return "points up to a process or tool"
    if target not in DOWN:
        return f"{target} has no place in the layer picture"
    if target in DOWN[own]:
        return None
    if target in below(own):
        return "skips a layer"
    return "points up or sideways"


class LayerTests(unittest.TestCase):
    def test_every_module_has_a_place(self):
        placed = FOUNDATION | set(DOWN) | TOP
        self.assertEqual(sorted({own for _, own, _ in modules()} - placed - {"__init__"}), [])

    def test_only_web_imports_twisted_web_and_only_token_imports_pkcs11(self):
        wrong = [(module, name) for module, own, names in modules() for name in names
                 if (name.startswith("twisted.web") and own != "web")
                 or (name.split(".")[0] == "pkcs11" and own != "token")]
        self.assertEqual(wrong, [])

    def test_imports_point_down_without_skipping(self):
        wrong = []
        for module, own, names in modules():
            for name in names:
                target = layer(name)
                if target is None or (module, name) in ALLOWED:
                    continue
                why = verdict(own, target)
                if why is not None:
                    wrong.append(f"{module} imports {name}: {why}")
        self.assertEqual(sorted(set(wrong)), [])

    def test_no_cycle_inside_a_package(self):
        paths = {module_name(p): p for p in ROOT.rglob("*.py")}
        graph: dict[str, set[str]] = {}
        for name, path in paths.items():
            parent = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
            targets = set()
            for imported in imports(path):
                while imported and imported not in paths:
                    imported = imported.rpartition(".")[0]
                if imported and imported != name and imported.rsplit(".", 1)[0] == parent \
                        and not paths[imported].name == "__init__.py":
                    targets.add(imported)
            graph[name] = targets
        cycles = []
        state: dict[str, int] = {}

        def visit(node: str, trail: list[str]) -> None:
            state[node] = 1
            for nxt in sorted(graph[node]):
                if state.get(nxt) == 1:
                    cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]))
                elif nxt not in state:
                    visit(nxt, [*trail, nxt])
            state[node] = 2
        for node in sorted(graph):
            if node not in state:
                visit(node, [node])
        self.assertEqual(cycles, [])

    def test_the_rules_see_a_violation(self):
        """The checks read relative imports right, and judge as the picture says."""
        self.assertIn("estappliance.errors", imports(ROOT / "store" / "package_tables.py"))
        self.assertIn("estappliance.token.key_specs", imports(ROOT / "token" / "session.py"))
        self.assertIn("estappliance.ra.cmc.common", imports(ROOT / "ra" / "cmc" / "enroll.py"))
        self.assertEqual(verdict("web", "ca"), "skips a layer")
        self.assertEqual(verdict("store", "ra"), "points up or sideways")
        self.assertEqual(verdict("ca", "distribution"), "points up or sideways")
        self.assertEqual(verdict("pki", "store"), "a foundation module imports only the foundation")
        self.assertEqual(verdict("client", "ra"), "the EST client uses only the foundation")
        self.assertIsNone(verdict("ra", "store"))
        self.assertIsNone(verdict("web", "pki"))

    def test_every_pki_error_is_a_pki_error(self):
        """One base for the pure layer's errors: a caller catches PkiError."""
        from estappliance import pki
        from estappliance.pki.errors import PkiError
        stray = []
        for info in pkgutil.iter_modules(pki.__path__):
            module = importlib.import_module(f"estappliance.pki.{info.name}")
            stray += [f"{info.name}.{name}" for name, value in vars(module).items()
                      if inspect.isclass(value) and issubclass(value, Exception) and value.__module__ == module.__name__
                      and not issubclass(value, PkiError)]
        self.assertEqual(stray, [])
