"""Every public name of ``skfungi`` resolves lazily to the object its submodule defines."""

from __future__ import annotations

import importlib

import skfungi


def test_every_public_name_resolves_to_its_submodules_object():
    assert set(skfungi.__all__) - {"__version__"} == set(skfungi._EXPORTS)
    for name, module in skfungi._EXPORTS.items():
        assert getattr(skfungi, name) is getattr(importlib.import_module(module, "skfungi"), name), name
    assert set(skfungi._EXPORTS) <= set(dir(skfungi))
