"""The house rules of ARCHITECTURE.md, checked: imports point one way, and only flows/ imports Prefect."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tinylm"

# What each folder may import from tinylm (besides itself); third-party imports are free except Prefect.
ALLOWED = {
    "model": set(),
    "storage": {"stats"},
    "tracking": {"storage"},
    "corpus": {"storage", "stats", "config", "peak_memory", "registry"},
    "tokens": {"storage", "corpus", "stats", "config", "peak_memory"},
    "weights": {"model", "storage", "tracking", "config"},
    "training": {"model", "weights", "tokens", "storage", "tracking", "config", "registry"},
    "inference": {"model", "weights", "tokens", "storage", "tracking"},
    "export": {"model", "weights", "tokens", "storage", "tracking"},
    "evaluation": {
        "model",
        "weights",
        "corpus",
        "tokens",
        "storage",
        "tracking",
        "training",
        "inference",
        "export",
        "stats",
        "config",
    },
    "flows": {
        "model",
        "weights",
        "storage",
        "tracking",
        "corpus",
        "tokens",
        "training",
        "inference",
        "export",
        "evaluation",
        "stats",
        "config",
        "registry",
    },
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_each_folder_imports_only_the_folders_below_it():
    wrong = []
    for folder, allowed in ALLOWED.items():
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            for name in imported_modules(path):
                parts = name.split(".")
                if parts[0] == "tinylm" and len(parts) > 1 and parts[1] not in allowed | {folder}:
                    wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not wrong, "imports against ARCHITECTURE.md:\n" + "\n".join(wrong)


def test_only_flows_import_prefect():
    outside = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] != "flows"
        and any(name.split(".")[0] == "prefect" for name in imported_modules(path))
    ]
    assert outside == []


def test_model_imports_torch_and_nothing_of_the_pipeline():
    for path in sorted((PACKAGE / "model").rglob("*.py")):
        third_party = {name.split(".")[0] for name in imported_modules(path)} - {"tinylm", "__future__"}
        # pydantic only for Field: the shape's fields carry their descriptions and bounds to the forms
        assert third_party <= {"torch", "math", "dataclasses", "typing", "collections", "pydantic"}, path


def test_folders_stay_small_and_module_names_mean_one_thing():
    for folder in [PACKAGE, *(path for path in PACKAGE.rglob("*") if path.is_dir() and path.name != "__pycache__")]:
        assert len(list(folder.glob("*.py"))) <= 16, f"{folder} has grown past about 15 modules: split it"
    names: dict[str, list[Path]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py":
            names.setdefault(path.stem, []).append(path.relative_to(PACKAGE))
    # A flow may share its stage's name (flows/shards.py runs tokens/shards.py): one job at two layers;
    # and config.py is configuration wherever it is (the pipeline's pydantic models, the model's shape).
    repeated = {
        name: paths
        for name, paths in names.items()
        if name != "config" and len([path for path in paths if path.parts[0] != "flows"]) > 1
    }
    assert repeated == {}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycles_between_modules():
    """Not even through an import inside a function: a cycle means two modules are one idea split in two."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:  # `from tinylm.flows import report` imports the module report
                    submodule = f"{node.module}.{alias.name}"
                    targets.add(submodule if submodule in modules else node.module)
        graph[name] = {
            target for target in targets if target in modules and target != name and not name.startswith(f"{target}.")
        }
    cycles = []
    for start in graph:
        stack = [(start, [start])]
        seen = set()
        while stack:
            current, route = stack.pop()
            for target in graph[current]:
                if target == start:
                    cycles.append(" -> ".join([*route, start]))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, [*route, target]))
    assert cycles == [], "\n".join(cycles)
