"""Digests of what an object holds (the negative-bank cache's key): equal for equal content, different
whenever anything a result could depend on differs, and an error where content cannot be digested."""

from __future__ import annotations

import importlib.metadata
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_cnn

from skfungi._utils.content_digest import UnhashableError, content_digest, package_version

SCALE = 2.0


def scaled(x):
    return x * SCALE


def test_equal_content_gives_equal_digests_and_any_value_changes_it():
    assert content_digest(tiny_cnn()) == content_digest(tiny_cnn())  # two objects, same weights
    changed = tiny_cnn()
    with torch.no_grad():
        changed.norm.running_mean[0] += 1e-6  # a buffer
    assert content_digest(changed) != content_digest(tiny_cnn())
    assert content_digest(tiny_cnn(bias=False)) != content_digest(tiny_cnn())
    plain = tiny_cnn()
    plain.gain = 2  # a plain attribute
    assert content_digest(plain) != content_digest(tiny_cnn())


def test_tensors_are_digested_by_dtype_shape_and_bytes():
    values = torch.arange(6.0)
    assert content_digest(values) == content_digest(torch.arange(6.0))
    assert content_digest(values) != content_digest(values.to(torch.bfloat16))
    assert content_digest(values) != content_digest(values.reshape(2, 3))
    assert content_digest(values.reshape(2, 3).T) == content_digest(values.reshape(2, 3).T.contiguous())


def test_sets_do_not_depend_on_their_order():
    assert content_digest({"b", "a", "c"}) == content_digest({"c", "a", "b"})
    assert content_digest(frozenset([1, 2])) != content_digest({1, 2})


def test_functions_are_digested_by_their_code_defaults_closure_and_globals(monkeypatch):
    assert content_digest(lambda x: x * 2) == content_digest(lambda x: x * 2)  # two lambdas, same code
    assert content_digest(lambda x: x * 2) != content_digest(lambda x: x * 3)

    def scaler(factor):
        return lambda x: x * factor

    assert content_digest(scaler(2)) != content_digest(scaler(3))  # closure cells

    def with_default(factor):
        def multiply(x, factor=factor):
            return x * factor

        return multiply

    assert content_digest(with_default(2)) != content_digest(with_default(3))  # defaults
    before = content_digest(scaled)
    monkeypatch.setattr(__import__(__name__), "SCALE", 3.0)  # a global the function names
    assert content_digest(scaled) != before


def test_classes_outside_installed_packages_are_digested_by_their_body():
    def make(offset):
        class Shift(torch.nn.Module):
            def forward(self, x):
                return super().forward(x) + offset  # super(): the method's closure holds the class

        return Shift

    assert content_digest(make(1)) == content_digest(make(1))
    assert content_digest(make(1)) != content_digest(make(2))


def test_installed_code_is_named_with_its_package_version():
    assert package_version("torch.nn.functional") == f"torch {importlib.metadata.version('torch')}"
    assert package_version("json").startswith("python ")
    assert package_version("a_script_of_mine") is None
    assert content_digest(F.relu) == content_digest(F.relu) != content_digest(F.gelu)


def test_what_cannot_be_pickled_is_unhashable():
    with pytest.raises(UnhashableError, match="lock"):
        content_digest({"lock": threading.Lock()})
    with pytest.raises(UnhashableError, match="meta"):
        content_digest(torch.empty(2, device="meta"))


def test_arrays_are_digested_by_value():
    assert content_digest(np.arange(3)) == content_digest(np.arange(3))
    assert content_digest(np.arange(3)) != content_digest(np.arange(3.0))
