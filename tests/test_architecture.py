"""The layers of selfmaker/ point down: no import cycle between packages, no service reaching up into the ASGI app.

The import graph is read from the source with ``ast``, not by importing it, and counts the imports that
run when a module is imported: its top-level statements (also inside top-level ``if``/``try``/``with``
and class bodies), but not those under ``if TYPE_CHECKING:`` (never run) and not those inside functions.
An import inside a function is late binding: it runs when called, after every module is loaded, so it
may point anywhere (``load_all`` importing every service, ``Backends.build`` importing the authenticator).
Modules are collapsed to their package under selfmaker/ (``selfmaker.services.hosting.fleet`` counts as
``selfmaker.services``; a top-level module such as ``selfmaker.backends`` is its own node), and that
graph must be acyclic.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "selfmaker"

# Package-level cycles tolerated for now, each as a frozenset of the packages in it, with the reason.
# Empty: keep it so; a new cycle is fixed by moving the shared piece down, not by listing it here.
KNOWN_CYCLES: set[frozenset[str]] = set()

# Whose import registers something (see selfmaker/server/operations.py's SERVICE_MODULES).
REGISTERING_CALLS = {
    "operation",
    "background_worker",
    "register",
    "on_done",
    "declare_implemented",
    "scrape_collector",
    "before_scrape",
}


def _modules() -> dict[str, tuple[Path, bool]]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, (path, _) in MODULES.items()}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level(statements):
    """The statements that run when the module is imported (function bodies excluded)."""
    for statement in statements:
        yield statement
        if isinstance(statement, ast.If):
            yield from _top_level(
                statement.orelse if _is_type_checking(statement.test) else statement.body + statement.orelse
            )
        elif isinstance(statement, ast.Try):
            yield from _top_level(
                statement.body
                + statement.orelse
                + statement.finalbody
                + [s for handler in statement.handlers for s in handler.body]
            )
        elif isinstance(statement, (ast.With, ast.ClassDef)):
            yield from _top_level(statement.body)


def _source(module: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` in ``module`` reads from."""
    if not node.level:
        return node.module or ""
    package = module if MODULES[module][1] else module.rpartition(".")[0]
    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The selfmaker modules an import statement in ``module`` loads."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = _source(module, node)
        # `from package import name` loads package.name when that is a module, else the package only.
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
    return [name for name in names if name == "selfmaker" or name.startswith("selfmaker.")]


def _imports(module: str, *, top_level_only: bool) -> list[tuple[str, int]]:
    tree = TREES[module]
    statements = _top_level(tree.body) if top_level_only else ast.walk(tree)
    return [
        (target, node.lineno)
        for node in statements
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for target in _targets(module, node)
    ]


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _package_graph() -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) -> the imports that make that edge, as ``module:line -> module``."""
    edges = defaultdict(list)
    for module in MODULES:
        for target, line in _imports(module, top_level_only=True):
            if _package(module) != _package(target):
                edges[(_package(module), _package(target))].append(f"{module}:{line} -> {target}")
    return edges


def _cycles(edges) -> list[frozenset[str]]:
    """The strongly connected components of more than one package (Tarjan)."""
    successors = defaultdict(set)
    for a, b in edges:
        successors[a].add(b)
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in successors[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted({n for edge in edges for n in edge}):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_imports_it_must():
    """The walker is not blind: handlers import the operation registry at the top of their modules; the
    authenticator that Backends.build imports inside the function is seen, but makes no edge."""
    edges = _package_graph()
    assert ("selfmaker.services", "selfmaker.server") in edges
    assert ("selfmaker.store", "selfmaker.errors") in edges
    assert "selfmaker.server.auth" in [t for t, _ in _imports("selfmaker.backends", top_level_only=False)]
    assert ("selfmaker.backends", "selfmaker.server") not in edges


def test_packages_import_each_other_without_cycles():
    edges = _package_graph()
    unexpected = [cycle for cycle in _cycles(edges) if cycle not in KNOWN_CYCLES]
    report = []
    for cycle in unexpected:
        report.append(f"cycle between {sorted(cycle)}:")
        report += [
            f"    {line}" for (a, b), lines in sorted(edges.items()) if a in cycle and b in cycle for line in lines
        ]
    assert not unexpected, "\n".join(report)


# Imports of our own modules (or names from them) that may take another name, each with the reason. Empty:
# a module whose name needs an alias to read well, or clashes with another, is renamed instead.
ALIASED_IMPORTS_ALLOWED: dict[str, str] = {}


def test_our_own_modules_are_imported_under_their_own_names():
    """``import selfmaker.x as y`` and ``from .x import z as w`` hide what is used: the reader greps for y."""
    offenders = []
    for module in MODULES:
        for node in ast.walk(TREES[module]):
            if isinstance(node, ast.Import):
                sources = [(alias, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                sources = [(alias, _source(module, node)) for alias in node.names]
            else:
                continue
            for alias, source in sources:
                ours = source == "selfmaker" or source.startswith("selfmaker.")
                if ours and alias.asname and alias.asname != alias.name:
                    where = f"{module}:{node.lineno}"
                    if where not in ALIASED_IMPORTS_ALLOWED:
                        offenders.append(f"{where} imports {source}: {alias.name} as {alias.asname}")
    assert not offenders, "\n".join(offenders)


def test_only_the_server_and_the_entry_point_import_the_asgi_app():
    """Services, engines and AWS subsets reach the backends and the worker registry through
    selfmaker/backends.py, below them; the ASGI app is on top. The CLI starts the app: it may import it."""
    offenders = [
        f"{module}:{line}"
        for module in MODULES
        if not module.startswith("selfmaker.server.") and module != "selfmaker.cli"
        for target, line in _imports(module, top_level_only=False)
        if target == "selfmaker.server.app"
    ]
    assert not offenders, f"these import selfmaker.server.app: {offenders}"


def _registers(module: str) -> bool:
    """Does importing ``module`` register something (an @operation, a worker, a controller, a Kind)?"""

    def name_of(call):
        func = call.func
        return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None

    for statement in _top_level(TREES[module].body):
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            nodes = [n for decorator in statement.decorator_list for n in ast.walk(decorator)]
        elif isinstance(statement, (ast.Expr, ast.Assign, ast.AnnAssign)):
            nodes = list(ast.walk(statement))
        else:
            continue
        decorated = isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        for node in nodes:
            if isinstance(node, ast.Call) and name_of(node) in REGISTERING_CALLS:
                return True
            if decorated and isinstance(node, ast.Name) and node.id in REGISTERING_CALLS:
                return True  # a bare @background_worker
    return False


def test_every_module_that_registers_is_loaded_by_name():
    from selfmaker.backends import WORKER_ORDER
    from selfmaker.server.operations import SERVICE_MODULES

    registering = {m for m in MODULES if _registers(m)} - {"selfmaker.server.operations", "selfmaker.backends"}
    assert registering, "the scan found no registering module: it is broken"
    assert sorted(registering - set(SERVICE_MODULES)) == [], "add these to SERVICE_MODULES"
    assert sorted(set(SERVICE_MODULES) - set(MODULES)) == [], "SERVICE_MODULES names modules that do not exist"
    assert sorted(set(WORKER_ORDER) - set(SERVICE_MODULES)) == [], "a worker's module must be in SERVICE_MODULES"


def test_importing_a_package_registers_nothing():
    """A package __init__ loads no registering module, so what is served is SERVICE_MODULES, not import order."""
    from selfmaker.server.operations import SERVICE_MODULES

    registering = set(SERVICE_MODULES)
    for package in (m for m, (_, is_package) in MODULES.items() if is_package):
        seen, todo = set(), [package]
        while todo:  # everything importing the package loads at import time
            module = todo.pop()
            if module in seen or module not in MODULES:
                continue
            seen.add(module)
            todo += [target for target, _ in _imports(module, top_level_only=True)]
        assert not seen & registering, f"importing {package} registers {sorted(seen & registering)}"


def test_workers_start_in_the_declared_order():
    from selfmaker.backends import WORKER_ORDER, worker_factories
    from selfmaker.server.operations import load_all

    load_all()
    assert [factory.__module__ for factory in worker_factories()] == list(WORKER_ORDER)
    order = list(WORKER_ORDER)
    # The reasons written next to WORKER_ORDER: producers stop before the flushers they feed,
    # the reconciler stops before the fleet it starts instances on.
    assert order.index("selfmaker.aws.cloudwatch.metric_store") < order.index(
        "selfmaker.services.hosting.invocation_metrics"
    )
    assert order.index("selfmaker.services.hosting.fleet") < order.index("selfmaker.engines.reconciler")
    assert order.index("selfmaker.services.jobs.credentials") < order.index("selfmaker.engines.reconciler")
    # The log shippers stop after the fleet (and the reconciler), which finish the shippers of what they stop.
    assert order.index("selfmaker.services.jobs.logship") < order.index("selfmaker.services.hosting.fleet")


def test_a_worker_without_a_declared_place_is_refused():
    from selfmaker.backends import background_worker

    def undeclared(backends):
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="WORKER_ORDER"):
        background_worker(undeclared)  # this test module has no place in WORKER_ORDER


def test_kinds_are_declared_not_subclassed():
    """A family declares a Kind (or a JobKind) with hooks; only the mechanisms themselves build on Kind."""
    mechanisms = {"selfmaker.services.kinds", "selfmaker.services.jobs.lifecycle"}
    subclasses = []
    for name, (path, _) in MODULES.items():
        if name in mechanisms:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if bases & {"Kind", "JobKind"}:
                    subclasses.append(f"{name}.{node.name}")
    assert not subclasses, f"declare these as Kind(...)/JobKind(...) with hooks instead: {subclasses}"


# What a device installs for the edge agent (pyproject's edge-agent extra, on top of boto3): nothing else.
EDGE_AGENT_THIRD_PARTY = {"boto3", "botocore", "numpy", "onnxruntime"}


def test_the_edge_agent_loads_no_server_code():
    """The agent runs on devices: every module it can load (at import time or in a function) is its own, or
    the one loader of compiled models it shares with the model server, and needs only its extra's packages."""
    import sys

    seen, todo = set(), [m for m in MODULES if m.startswith("selfmaker.edge_agent")]
    while todo:
        module = todo.pop()
        if module not in seen and module in MODULES:
            seen.add(module)
            todo += [target for target, _ in _imports(module, top_level_only=False)]
    assert "selfmaker.container.compiled_model" in seen, "the walk is blind: the agent loads through it"
    shared = {"selfmaker", "selfmaker.container", "selfmaker.container.compiled_model"}
    assert sorted(m for m in seen if not m.startswith("selfmaker.edge_agent") and m not in shared) == []
    third_party = set()
    for module in seen:
        for node in ast.walk(TREES[module]):
            if isinstance(node, ast.Import):
                third_party |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                third_party.add((node.module or "").split(".")[0])
    third_party -= set(sys.stdlib_module_names) | {"selfmaker", "__future__"}
    assert third_party <= EDGE_AGENT_THIRD_PARTY, sorted(third_party - EDGE_AGENT_THIRD_PARTY)


# -- the tests themselves ----------------------------------------------------------------------------------

TESTS = ROOT.parent / "tests"

# Raw usages a test needs, by (module, top-level test or helper), each with its reason. Keep it short.
RAW_ALLOWED = {
    # It proves that a client made without the factory is checked too: the raw client is the point.
    ("test_conformance.py", "test_a_client_made_any_way_is_checked"): "boto3",
    # A writer spacing its appends so the follower sees them arrive over time: a pace, not a poll.
    ("test_logs.py", "test_follow_yields_events_as_they_are_written"): "sleep in a loop",
    # A fake model server sending its answer a byte at a time, so that the client reads it in pieces: a pace.
    ("test_router_client.py", "test_an_answer_split_byte_by_byte"): "sleep in a loop",
}


def _raw_usages(tree: ast.Module):
    """(top-level name, what) for each polling loop and each raw boto3 client or session in a test module."""
    for top in tree.body:
        owner = getattr(top, "name", "<module>")
        for node in ast.walk(top):
            if isinstance(node, (ast.While, ast.For, ast.AsyncFor)) and any(
                isinstance(call, ast.Call)
                and (
                    (isinstance(call.func, ast.Attribute) and call.func.attr == "sleep")
                    or (isinstance(call.func, ast.Name) and call.func.id == "sleep")
                )
                for call in ast.walk(node)
            ):
                yield owner, "sleep in a loop", node.lineno
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "boto3"
                and node.func.attr in ("client", "resource", "Session")
            ):
                yield owner, "boto3", node.lineno


def test_tests_poll_through_wait_for_and_make_clients_through_the_factory():
    """No raw polling loop in a test module (support.waiting.wait_for is the one: it times out saying what it
    last saw), and no raw boto3 client or session (fixtures and support.clients.make_client set the test
    defaults: no retries, the test server). Only tests/support/ implements these."""
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        if "support" in path.relative_to(TESTS).parts:
            continue
        for owner, what, line in _raw_usages(ast.parse(path.read_text(), str(path))):
            if RAW_ALLOWED.get((path.name, owner)) != what:
                found.append(f"{path.relative_to(TESTS)}:{line} ({owner}): {what}")
    assert found == [], "use support.waiting.wait_for / support.clients.make_client (or a client fixture)"
    unused = {key for key in RAW_ALLOWED if not (TESTS / key[0]).exists()}
    assert unused == set(), "RAW_ALLOWED names modules that no longer exist"


def test_the_test_lint_sees_what_it_must():
    sample = ast.parse(
        "import boto3, time\n"
        "def test_x():\n"
        "    while True:\n"
        "        time.sleep(1)\n"
        "    for _ in range(3):\n"
        "        sleep(1)\n"
        "    boto3.client('s3')\n"
        "    boto3.Session()\n"
        "    while pages:\n"
        "        pages.pop()\n"
    )
    assert [what for _, what, _ in _raw_usages(sample)] == ["sleep in a loop", "sleep in a loop", "boto3", "boto3"]
