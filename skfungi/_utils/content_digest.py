"""A digest of everything an object holds, for cache keys that must change whenever a result could.

:func:`content_digest` streams an object through a pickler whose output
goes into BLAKE2b, never to disk. Pickling already visits all that an
object needs to be rebuilt (attributes, containers, a module's parameters,
buffers, hooks and submodules, a tokenizer's vocabulary and normaliser);
the pickler writes a few kinds of objects its own way, so that the stream
is complete and the same in every process:

- tensors: their type, dtype, shape and a digest of their raw bytes (on any
  device, bfloat16 included), not torch's storage format;
- sets: the sorted digests of their items (the iteration order of a set of
  strings changes with every process's string hashing);
- functions and classes of an installed package or of the standard library,
  importable by their name: that name and the package's version (its code
  changes only with it);
- every other function (a lambda, a closure, a function of a script or a
  notebook): its code, defaults, closure cells, attributes and, for code
  outside installed packages, the values of the globals it names; every other
  class: its metaclass, bases and body, so that editing a method changes the digest;
- code objects: bytecode, constants and names, not the file name or line numbers.

Strings, numbers and tuples are written by value every time (the pickler's
memo would otherwise record whether two equal strings are one object, which
differs between processes). Whatever cannot be pickled (a lock, an open
file, a compiled module) raises :class:`UnhashableError`: a cache keyed on
it would be unsafe.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import pickle
import sys
import types

import torch

__all__ = ["UnhashableError", "content_digest", "package_version"]

DIGEST_SIZE = 20
_BY_VALUE = (str, bytes, tuple, frozenset, int, float, complex, bool, type(None))
_CLASS_BOOKKEEPING = {"__dict__", "__weakref__", "__module__", "__qualname__", "__doc__", "__firstlineno__"}
# attributes of classes written in C (slots, methods), which cannot be pickled: named, their code is the package's
_C_DESCRIPTORS = (
    types.MemberDescriptorType,
    types.GetSetDescriptorType,
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
    types.BuiltinFunctionType,
)


class UnhashableError(ValueError):
    """An object holds something whose content cannot be digested (the message says what)."""


def content_digest(obj) -> bytes:
    """A BLAKE2b digest of ``obj`` and of everything it holds (see the module docstring)."""
    return _Digester().digest(obj)


@functools.cache
def package_version(module_name: str) -> str | None:
    """``"<distribution> <version>"`` of the installed package (or ``"python <version>"`` of the standard
    library module) that ``module_name`` belongs to; None for code outside them (a script, a notebook)."""
    top = module_name.partition(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names or top == "builtins":
        return f"python {sys.version}"
    distributions = _distributions().get(top)
    if not distributions:
        return None
    return ", ".join(f"{name} {importlib.metadata.version(name)}" for name in sorted(set(distributions)))


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _rebuild(*content):
    """The callable every special reduction names (by reference): its arguments are what is digested."""
    raise NotImplementedError("content digests are never unpickled")


class _Digester:
    """Digests of one object and of what it reaches; each function or class defined outside installed
    packages is digested once, and a definition that reaches itself (``super()``, recursion) is named."""

    def __init__(self):
        self._definitions: dict[int, bytes] = {}
        self._in_progress: set[int] = set()
        self._alive = []  # keeps digested definitions alive, so that their ids stay theirs

    def digest(self, obj) -> bytes:
        hasher = hashlib.blake2b(digest_size=DIGEST_SIZE)
        try:
            _HashingPickler(hasher, self).dump(obj)
        except UnhashableError:
            raise
        except Exception as error:  # whatever a __reduce__ raises: not digestible, so not cacheable
            raise UnhashableError(f"{type(error).__name__}: {error}") from error
        return hasher.digest()

    def definition(self, obj, content) -> tuple:
        """The reduction of a function or class by content: a digest of ``content()``, computed once."""
        identity = id(obj)
        if identity in self._in_progress:
            return _rebuild, ("definition in progress", obj.__module__, obj.__qualname__)
        if identity not in self._definitions:
            self._in_progress.add(identity)
            try:
                self._definitions[identity] = self.digest(content())
            finally:
                self._in_progress.discard(identity)
            self._alive.append(obj)
        return _rebuild, ("definition", obj.__module__, obj.__qualname__, self._definitions[identity])


class _HashingPickler(pickle._Pickler):
    """The pure-Python pickler: unlike the C one, it asks :meth:`reducer_override` about every object
    (sets and strings included), which the stable digest needs."""

    def __init__(self, hasher, digester: _Digester):
        super().__init__(types.SimpleNamespace(write=hasher.update), protocol=5)
        self.digester = digester

    def memoize(self, obj) -> None:
        if not isinstance(obj, _BY_VALUE):
            super().memoize(obj)

    def reducer_override(self, obj):
        if obj is _rebuild:
            return NotImplemented  # by reference
        if isinstance(obj, torch.Tensor):
            return _rebuild, ("tensor", type(obj), str(obj.dtype), tuple(obj.shape), _tensor_digest(obj))
        if isinstance(obj, set | frozenset):
            return _rebuild, (type(obj).__name__, sorted(self.digester.digest(item) for item in obj))
        if isinstance(obj, types.CodeType):
            return _rebuild, ("code", *_code_content(obj))
        if isinstance(obj, types.ModuleType):
            return _rebuild, ("module", obj.__name__, package_version(obj.__name__))
        if isinstance(obj, types.FunctionType | type):
            module = obj.__module__ or "__main__"
            version = package_version(module)
            if version is not None and (module == "builtins" or _importable(obj)):
                return _rebuild, ("global", module, obj.__qualname__, version)
            if isinstance(obj, type):
                return self.digester.definition(obj, lambda: _class_content(obj))
            return self.digester.definition(obj, lambda: _function_content(obj, with_globals=version is None))
        return NotImplemented


def _tensor_digest(tensor: torch.Tensor) -> bytes:
    if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_meta:
        raise UnhashableError(f"a {tensor.layout} tensor{' on the meta device' if tensor.is_meta else ''}")
    values = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)  # raw bytes: bfloat16 too
    return hashlib.blake2b(values.numpy(), digest_size=DIGEST_SIZE).digest()


def _code_content(code: types.CodeType) -> tuple:
    return (
        code.co_name,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags,
        code.co_code,
        code.co_consts,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
    )


def _function_content(function: types.FunctionType, with_globals: bool) -> tuple:
    cells = tuple(_cell_contents(cell) for cell in function.__closure__ or ())
    named = {}
    if with_globals:
        namespace = function.__globals__
        named = {name: namespace[name] for name in sorted(_global_names(function.__code__)) if name in namespace}
    return (function.__code__, function.__defaults__, function.__kwdefaults__, cells, named, function.__dict__)


def _cell_contents(cell: types.CellType):
    try:
        return ("cell", cell.cell_contents)
    except ValueError:  # a cell not yet filled
        return ("empty cell",)


def _global_names(code: types.CodeType) -> set[str]:
    """Names a code object (and the code nested in it) may look up, globals among them."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _global_names(constant)
    return names


def _class_content(cls: type) -> tuple:
    body = [(name, _member(value)) for name, value in vars(cls).items() if name not in _CLASS_BOOKKEEPING]
    return (type(cls), cls.__bases__, body)


def _member(value):
    """A class attribute as it can be pickled: a method's function, a property's accessors, a C attribute's
    name."""
    if isinstance(value, staticmethod | classmethod):
        return (type(value).__name__, value.__func__)
    if isinstance(value, property):
        return ("property", value.fget, value.fset, value.fdel)
    if isinstance(value, _C_DESCRIPTORS):
        return ("descriptor", value.__name__)
    return value


def _importable(obj) -> bool:
    """Whether ``obj`` is what its module's attribute of its qualified name holds (not a lambda, a
    closure or a class made inside a function)."""
    found = sys.modules.get(obj.__module__)
    for part in obj.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is obj
