"""scikit-learn's private names come from one module, and the declared bound holds the installed release."""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

import sklearn
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

import skfungi._utils.sklearn_compat as compat

ROOT = Path(__file__).resolve().parents[1]
PRIVATE_MODULES = ("sklearn.utils._param_validation",)
PRIVATE_NAMES = ("_fit_context", "_check_feature_names_in")


def declared_requirement() -> Requirement:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = [line.strip() for line in config["options"]["install_requires"].splitlines() if line.strip()]
    return next(Requirement(line) for line in lines if line.startswith("scikit-learn"))


def test_setup_cfg_bounds_scikit_learn_to_the_checked_releases_and_the_installed_one_is_inside():
    requirement = declared_requirement()
    assert requirement.specifier == SpecifierSet(compat.SUPPORTED.removeprefix("scikit-learn"))
    assert any(spec.operator == "<" for spec in requirement.specifier)  # an upper bound
    assert requirement.specifier.contains(sklearn.__version__), sklearn.__version__


def test_only_the_compatibility_module_imports_scikit_learns_private_names():
    offenders = []
    for path in sorted((ROOT / "skfungi").rglob("*.py")):
        if path.name == "sklearn_compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (
                node.module in PRIVATE_MODULES or any(alias.name in PRIVATE_NAMES for alias in node.names)
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_every_name_it_provides_is_what_scikit_learn_has():
    from sklearn.utils import _param_validation

    for name in ("HasMethods", "Interval", "InvalidParameterError", "Options", "StrOptions"):
        assert getattr(compat, name) is getattr(_param_validation, name)
    assert compat.validate_parameter_constraints is _param_validation.validate_parameter_constraints
