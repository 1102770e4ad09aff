"""A stand-in `tensorrt` module made from one release's recorded surface (surfaces/<version>.json).

It has exactly the classes, enums (with their members), methods, properties, constants and
functions of that release, and checks every use against what pybind11 would accept there:

- a name the release lacks (a class, an enum member such as `BuilderFlag.FP16` on TensorRT 11,
  a method or property) raises AttributeError naming the caller's file:line and the release, as
  `deploy/engine.py:299: tensorrt 11.4.0.106 has no BuilderFlag.FP16`; `hasattr` sees False;
- a call is bound against the method's signatures (each overload): positional count, keyword
  names (pybind11's unnamed `argN` parameters are positional only), missing arguments, and the
  argument types pybind11 checks: enums and the module's classes exactly (Dims, Weights and
  Permutation also from sequences/arrays, as pybind11's implicit conversions do), int (not
  float), float, str, buffers, sequences; anything else raises TypeError naming file:line;
- properties: read-only ones refuse assignment, setters check the value's type, and a pybind11
  object takes no attribute it does not have (a Python subclass, e.g. a calibrator, may);
- classes without a pybind11 constructor refuse construction ("No constructor defined!"); a
  Python subclass must call the base `__init__`, as pybind11 demands.

Results are stand-ins of the annotated return type (a method returning `INetworkDefinition`
returns a stand-in INetworkDefinition), with behaviour (behaviour.py) where a build or a run
needs more than a default: parsing ONNX into layers, building a plan, running it on host memory.
The stand-in never adds API: a behaviour runs only after the release's surface allowed the call.
"""

from __future__ import annotations

import json
import re
import sys
import types
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SURFACES = HERE / "surfaces"
SIGNATURE = re.compile(r"^(\w*)\((.*)\)(?: -> (.+))?$")
IMPLICIT = {"Dims", "Dims2", "Dims3", "Dims4", "DimsHW", "DimsExprs", "Weights", "Permutation"}  # from sequences
IMPLEMENTATION = {"standin.py", "behaviour.py", "host_cuda.py"}  # frames skipped when naming the caller
# Special methods made only where a behaviour gives them meaning (a default __eq__ returning True,
# or a __getitem__ that never raises IndexError, would mislead more than a missing one).
ALWAYS = {"__init__", "__enter__", "__exit__"}
# pybind11 classes with the buffer protocol, which a Python class cannot offer before 3.12: the
# stand-in gives them __bytes__ (so bytes(x) works as on the real one; memoryview(x) does not),
# and takes them wherever a buffer is.
BUFFER_PROTOCOL = {"IHostMemory"}


# ----------------------------------------------------------------------------- where and what


def caller() -> str:
    """file:line of the first frame outside this harness (the code that used the stand-in)."""
    frame = sys._getframe(1)
    while frame is not None and Path(frame.f_code.co_filename).name in IMPLEMENTATION \
            and Path(frame.f_code.co_filename).resolve().parent == HERE:
        frame = frame.f_back
    if frame is None:
        return "?"
    path = Path(frame.f_code.co_filename).resolve()
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return f"{shown}:{frame.f_lineno}"


def missing(version: str, owner: str, name: str) -> AttributeError:
    where = caller()
    MISSES.append((where, owner, name))
    return AttributeError(f"{where}: tensorrt {version} has no {owner + '.' if owner else ''}{name}")


MISSES: list[tuple[str, str, str]] = []  # every miss, hasattr's included (for diagnostics)


@cache
def load_surface(version: str) -> dict:
    path = SURFACES / f"{version}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no recorded surface (python -m tests.tensorrt_conformance.bindings)")
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None  # its text in the signature; None: required

    @property
    def positional_only(self) -> bool:
        return re.fullmatch(r"arg\d+", self.name) is not None


@dataclass(frozen=True)
class Signature:
    text: str
    params: tuple[Param, ...]  # without self
    returns: str
    varargs: bool  # (*args, **kwargs): pybind11 checks nothing here we could


def split_top(text: str) -> list[str]:
    """Split on commas outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[(<{":
            depth += 1
        elif ch in "])>}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


@cache
def parse_signature(text: str, method: bool) -> Signature:
    m = SIGNATURE.match(text)
    if m is None:
        return Signature(text, (), "object", True)
    params = []
    for part in split_top(m.group(2)):
        name, _, rest = part.partition(":")
        typ, eq, default = rest.partition(" = ")
        params.append(Param(name.strip(), typ.strip(), default.strip() if eq else None))
    varargs = any(p.name.startswith("*") for p in params)
    if method and params:
        params = params[1:]  # self (or arg0 of a property)
    return Signature(text, tuple(params), (m.group(3) or "None").strip(), varargs)


def bind(sig: Signature, args: tuple, kwargs: dict, module: "StandinModule") -> tuple[dict | None, str]:
    """The arguments by parameter name, or None and why pybind11 would refuse them."""
    if sig.varargs:
        return {"args": args, **kwargs}, ""
    if len(args) > len(sig.params):
        return None, f"{len(args)} positional arguments given, it takes {len(sig.params)}"
    bound = {p.name: a for p, a in zip(sig.params, args)}
    names = {p.name: p for p in sig.params}
    for key, value in kwargs.items():
        p = names.get(key)
        if p is None or p.positional_only:
            return None, f"unexpected keyword {key!r}"
        if key in bound:
            return None, f"{key!r} given twice"
        bound[key] = value
    for p in sig.params:
        if p.name not in bound:
            if p.default is None:
                return None, f"missing argument {p.name!r}"
            continue
        if not accepts(bound[p.name], p.type, module, p.default == "None"):
            return None, f"argument {p.name!r} is {type_name(bound[p.name])}, not {p.type}"
    return bound, ""


def type_name(value) -> str:
    t = type(value)
    return f"{t.__qualname__}" + (f".{value.name}" if isinstance(value, StandinEnum) else "")


def _inner(t: str) -> str:
    return t[t.index("[") + 1: t.rindex("]")]


def accepts(value, t: str, module: "StandinModule", none_ok: bool = False) -> bool:
    """Whether pybind11 would convert `value` to the annotated C++ type `t` (its convert pass)."""
    t = t.strip()
    if value is None and none_ok:
        return True
    if t.startswith(("Optional[", "typing.Optional[")):
        return value is None or accepts(value, _inner(t), module)
    if " | " in t:
        return any(accepts(value, alt, module) for alt in split_top(t.replace(" | ", ",")))
    if t in ("int", "typing.SupportsInt"):  # anything with __index__ (bool, numpy ints, enum members), not float
        return hasattr(type(value), "__index__")
    if t in ("float", "typing.SupportsFloat"):
        return not isinstance(value, (str, bytes)) and (hasattr(type(value), "__float__") or hasattr(type(value), "__index__"))
    if t == "bool":  # pybind11's convert pass takes None and anything with __bool__ or __index__
        return value is None or isinstance(value, (bool, np.bool_)) or hasattr(type(value), "__index__")
    if t == "str":
        return isinstance(value, (str, bytes)) or value is None  # const char * takes None
    if t in ("buffer", "bytes", "collections.abc.Buffer", "typing_extensions.Buffer"):
        return _is_buffer(value) and (t != "bytes" or isinstance(value, bytes))
    if re.match(r"^(List|list|Sequence|collections\.abc\.Sequence)\[", t):
        return _is_sequence(value) and all(accepts(v, _inner(t), module) for v in value)
    cls = module._class_of(t)
    if cls is None:
        return True  # a type pybind11 converts from what we cannot check here (numpy.ndarray, capsule, ...)
    if isinstance(value, cls):
        return True
    if cls.__name__ == "Weights":
        return isinstance(value, np.ndarray)
    return cls.__name__ in IMPLICIT and _is_sequence(value) and all(accepts(v, "int", module) for v in value)


def _is_buffer(value) -> bool:
    if isinstance(value, StandinObject) and any(type(value)._standin_has(q) for q in BUFFER_PROTOCOL):
        return True
    try:
        memoryview(value)
    except TypeError:
        return False
    return True


def _is_sequence(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray)) or (isinstance(value, StandinObject) and hasattr(type(value), "__len__")
                                                            and hasattr(type(value), "__getitem__"))


# ----------------------------------------------------------------------------- enums


class StandinEnum:
    """A pybind11 enum member: `.name`, `.value`, int(), hashable, equal only to itself."""

    __slots__ = ("name", "value")
    _standin_module: "StandinModule"

    def __init__(self, value):
        raise TypeError("stand-in enum members come from the class")

    def __int__(self):
        return self.value

    __index__ = __int__

    def __hash__(self):
        return hash(self.value)

    def __eq__(self, other):
        return type(other) is type(self) and other.value == self.value

    def __str__(self):
        return f"{type(self).__name__}.{self.name}"

    def __repr__(self):
        return f"<{type(self).__name__}.{self.name}: {self.value}>"


class EnumMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise missing(cls._standin_module.__version__, cls.__qualname__, name)

    def __call__(cls, value):
        for member in cls.__members__.values():
            if member.value == int(value):
                return member
        return cls._make(int(value), "???")

    def _make(cls, value: int, name: str):
        member = object.__new__(cls)
        object.__setattr__(member, "name", name)
        object.__setattr__(member, "value", value)
        return member


def make_enum(qualname: str, members: dict[str, int], module: "StandinModule") -> type:
    cls = EnumMeta(qualname.rsplit(".", 1)[-1], (StandinEnum,), {"__slots__": (), "__qualname__": qualname,
                                                                 "__module__": "tensorrt.tensorrt",
                                                                 "_standin_module": module})
    cls.__members__ = {}
    for name, value in sorted(members.items(), key=lambda kv: kv[1]):
        member = cls._make(value, name)
        cls.__members__[name] = member
        setattr(cls, name, member)
    return cls


# ----------------------------------------------------------------------------- classes


class ClassMeta(type):
    """A pybind11 class: a missing attribute names the caller; construction as pybind11 does it."""

    def __getattr__(cls, name):
        if name.startswith(("__", "_standin")):
            raise AttributeError(name)
        raise missing(cls._standin_module.__version__, cls.__qualname__, name)

    def __call__(cls, *args, **kwargs):
        obj = cls.__new__(cls)
        object.__setattr__(obj, "_standin", {})
        cls.__init__(obj, *args, **kwargs)
        if not obj._standin.get("initialized"):
            base = next(c for c in cls.__mro__ if c.__dict__.get("_standin_generated"))
            raise TypeError(f"{caller()}: tensorrt.tensorrt.{base.__qualname__}.__init__() must be called when "
                            "overriding __init__")
        return obj


class StandinObject(metaclass=ClassMeta):
    _standin_module: "StandinModule"
    _standin_generated = False

    def __getattr__(self, name):
        if name.startswith(("__", "_standin")):
            raise AttributeError(name)
        raise missing(self._standin_module.__version__, type(self)._standin_base().__qualname__, name)

    def __setattr__(self, name, value):
        cls = type(self)
        declared = next((c.__dict__[name] for c in cls.__mro__ if name in c.__dict__), None)
        if isinstance(declared, property) or not cls.__dict__.get("_standin_generated"):
            object.__setattr__(self, name, value)  # a property (checked there), or a Python subclass's own
            return
        raise missing(self._standin_module.__version__, cls.__qualname__, name)

    def __repr__(self):
        return f"<tensorrt.tensorrt.{type(self)._standin_base().__qualname__} stand-in of {self._standin_module.__version__}>"

    @classmethod
    def _standin_base(cls) -> type:
        return next(c for c in cls.__mro__ if c.__dict__.get("_standin_generated"))

    @classmethod
    def _standin_has(cls, qualname: str) -> bool:
        return any(c.__dict__.get("_standin_generated") and c.__qualname__ == qualname for c in cls.__mro__)


def new(cls: type, **state):
    """A stand-in object the library hands out (no constructor runs, as for a returned object)."""
    obj = cls.__new__(cls)
    object.__setattr__(obj, "_standin", {"initialized": True, **state})
    return obj


def _no_constructor(qualname: str):
    def __init__(self, *args, **kwargs):
        raise TypeError(f"{caller()}: tensorrt.tensorrt.{qualname}: No constructor defined!")

    return __init__


def _method(owner: str, name: str, signatures: list[str], module: "StandinModule", method: bool = True):
    sigs = [parse_signature(s, method) for s in signatures] or [parse_signature(f"{name}(*args, **kwargs)", False)]

    def call(*args, **kwargs):
        self, rest = (args[0], args[1:]) if method else (None, args)
        reasons = []
        for sig in sigs:
            bound, why = bind(sig, rest, kwargs, module)
            if bound is not None:
                if name == "__init__":
                    self._standin["initialized"] = True
                return module._behave(owner, name, self, bound, sig)
            reasons.append(why)
        shown = " | ".join(s.text for s in sigs)
        raise TypeError(f"{caller()}: tensorrt {module.__version__}: {owner}.{name}() refuses these arguments "
                        f"({'; '.join(reasons)}); it takes {shown}")

    call.__name__, call.__qualname__ = name, f"{owner}.{name}"
    call.__doc__ = "\n".join(signatures)
    return call


def _property(owner: str, name: str, entry: dict, module: "StandinModule") -> property:
    getter = parse_signature(entry["getter"], True) if entry.get("getter") else None
    setter = parse_signature(entry["setter"], True) if entry.get("setter") else None

    def fget(self):
        return module._behave(owner, name, self, {}, getter)

    def fset(self, value):
        if setter is None:
            raise AttributeError(f"{caller()}: tensorrt {module.__version__}: {owner}.{name} is read-only")
        if not setter.params or not accepts(value, setter.params[-1].type, module):
            raise TypeError(f"{caller()}: tensorrt {module.__version__}: {owner}.{name} takes "
                            f"{setter.params[-1].type if setter.params else 'nothing'}, not {type_name(value)}")
        self._standin[name] = value
        module._behave(owner, f"{name}=", self, {"value": value}, None, missing_ok=True)

    return property(fget, fset, doc=f"{entry.get('getter')} / {entry.get('setter')}")


# ----------------------------------------------------------------------------- the module


class StandinModule(types.ModuleType):
    """The stand-in `tensorrt`: a missing name raises AttributeError naming the caller."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise missing(self.__version__, "", name)

    def _class_of(self, annotation: str):
        """The stand-in class an annotation names (`Builder`, `ILogger.Severity`, `nvinfer1::DataType`)."""
        name = re.sub(r"^nvinfer1::(v_\d+_\d+::)?|^nvonnxparser::", "", annotation).replace("::", ".")
        if name not in self._classes and name[:1] == "I" and name[1:] in self._classes:
            name = name[1:]  # a C++ interface bound under another name (IEngineInspector -> EngineInspector)
        return self._classes.get(name)

    def _behave(self, owner: str, name: str, obj, bound: dict, sig: Signature | None, missing_ok: bool = False):
        """The behaviour registered for owner.name (along the MRO), else a default of the return type."""
        chain = [c.__qualname__ for c in type(obj).__mro__ if c.__dict__.get("_standin_generated")] if obj is not None \
            else [owner]
        for qualname in chain:
            fn = self._behaviours.get(f"{qualname}.{name}")
            if fn is not None:
                return fn(self, obj, bound)
        if missing_ok:
            return None
        if sig is not None and name in getattr(obj, "_standin", {}):
            return obj._standin[name]
        return self._default(sig.returns if sig else "None")

    def _default(self, returns: str):
        r = returns.strip()
        if r.startswith(("Optional[", "typing.Optional[")):
            r = _inner(r)
        r = r.split(" | ")[0]
        simple = {"None": None, "bool": True, "int": 0, "float": 0.0, "str": "", "bytes": b""}
        if r in simple:
            return simple[r]
        if re.match(r"^(List|list|Sequence|collections\.abc\.Sequence)\[", r):
            return []
        cls = self._class_of(r)
        if cls is None:
            return None
        if issubclass(cls, StandinEnum):
            return next(iter(cls.__members__.values()))
        return new(cls)


def _build_class(qualname: str, entry: dict, module: StandinModule, done: dict[str, type], pending: dict[str, dict]):
    if qualname in done:
        return done[qualname]
    bases = tuple(_build_class(b, pending[b], module, done, pending) for b in entry["bases"] if b in pending) \
        or (StandinObject,)
    ns: dict = {"__qualname__": qualname, "__module__": "tensorrt.tensorrt", "_standin_generated": True,
                "_standin_module": module}
    init = entry["members"].get("__init__")
    if init is None or init["kind"] != "method":
        ns["__init__"] = _no_constructor(qualname)
    for name, m in entry["members"].items():
        if name.startswith("__") and name not in ALWAYS and f"{qualname}.{name}" not in module._behaviours:
            continue
        if m["kind"] == "method":
            ns[name] = _method(qualname, name, m["signatures"], module)
        elif m["kind"] == "staticmethod":
            ns[name] = staticmethod(_method(qualname, name, m["signatures"], module, method=False))
        elif m["kind"] == "property":
            ns[name] = _property(qualname, name, m, module)
        elif m["kind"] == "pymethod":  # the package's context-manager methods: `with` returns the object
            ns[name] = (lambda this, *a: this) if name == "__enter__" else (lambda this, *a: None)
    if qualname in BUFFER_PROTOCOL:  # what the buffer protocol gives on the real one: bytes(x)
        ns["__bytes__"] = lambda self: bytes(self._standin["_data"])
    cls = ClassMeta(qualname.rsplit(".", 1)[-1], bases, ns)
    done[qualname] = cls
    return cls


def make_module(version: str, behaviours: dict | None = None) -> StandinModule:
    """The stand-in of release `version`, from its recorded surface, with behaviour.py's
    behaviours unless others are given."""
    if behaviours is None:
        from tests.tensorrt_conformance.behaviour import BEHAVIOURS as behaviours
    surface = load_surface(version)
    module = StandinModule("tensorrt", f"Stand-in of TensorRT {version}'s Python bindings (tests/tensorrt_conformance)")
    module.__version__ = surface["version"]
    module._behaviours = dict(behaviours)
    module._classes = {}
    module.__file__ = str(SURFACES / f"{version}.json")
    names = surface["names"]
    enums, pending = {}, {}
    for entry in _walk(names):
        if entry["kind"] == "enum":
            enums[entry["qualname"]] = entry
        elif entry["kind"] == "class":
            pending[entry["qualname"]] = entry
    for qualname, entry in enums.items():
        module._classes[qualname] = make_enum(qualname, entry["members"], module)
    done: dict[str, type] = {}
    for qualname, entry in pending.items():
        module._classes[qualname] = _build_class(qualname, entry, module, done, pending)
    for qualname, entry in list(enums.items()) + list(pending.items()):
        _attach(module, qualname, entry)
    _module_names(module, names)
    return module


@cache
def module_for(version: str) -> StandinModule:
    """One stand-in per release and process: its classes hold no state (objects do), so users share it."""
    return make_module(version)


def _walk(names: dict):
    for entry in names.values():
        if entry["kind"] in ("class", "enum"):
            yield entry
        if entry["kind"] == "class":
            yield from _walk(entry["members"])


def _attach(module: StandinModule, qualname: str, entry: dict) -> None:
    """Nested classes and exported enum constants as class attributes (Logger.Severity, Logger.ERROR)."""
    cls = module._classes[qualname]
    for name, m in entry.get("members", {}).items() if entry["kind"] == "class" else ():
        if m["kind"] in ("class", "enum"):
            type.__setattr__(cls, name, module._classes[m["qualname"]])
        elif m["kind"] == "constant":
            type.__setattr__(cls, name, module._classes[m["enum"]].__members__[m["member"]])
        elif m["kind"] == "static_property":
            type.__setattr__(cls, name, module._behave(qualname, name, None, {}, parse_signature(m["getter"], True)))


def _module_names(module: StandinModule, names: dict) -> None:
    for name, entry in names.items():
        kind = entry["kind"]
        if kind in ("class", "enum"):
            setattr(module, name, module._classes[entry["qualname"]])
        elif kind == "alias":
            setattr(module, name, module._classes[entry["of"]])
        elif kind == "constant":
            setattr(module, name, module._classes[entry["enum"]].__members__[entry["member"]])
        elif kind == "function":
            setattr(module, name, _method("tensorrt", name, entry["signatures"], module, method=False))
        elif kind == "pyfunction":
            fn = module._behaviours.get(f"tensorrt.{name}")
            setattr(module, name, (lambda f: lambda *a, **k: f(module, None, {"args": a, **k}))(fn) if fn
                    else _method("tensorrt", name, [f"{name}(*args, **kwargs)"], module, method=False))
        elif kind == "value" and name != "__version__":
            setattr(module, name, entry["value"])
