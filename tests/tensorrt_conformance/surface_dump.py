"""Dump the Python surface of the `tensorrt` module importable in this interpreter as JSON.

Run by the harness in a subprocess against the real bindings of one TensorRT release (their
libraries replaced by stubs): `python surface_dump.py OUT.json`. Standard library only, so it runs
under any interpreter the bindings were built for. What it records is what pybind11 shows: each
class with its bases, and each member as a method (the signature lines of its docstring, one per
overload), a property (getter and setter signatures), a nested class or enum, or a constant (an
enum member exported into a scope); each enum with its members' values; module functions.
Descriptions are dropped: only names and signatures are kept, types without the
extension module's prefix (`tensorrt.tensorrt.Builder` -> `Builder`).
"""

from __future__ import annotations

import inspect
import json
import re
import sys

PREFIX = "tensorrt.tensorrt."  # the extension module's name, dropped from types: `Builder`, `ILogger.Severity`
SIGNATURE = re.compile(r"^(?:\d+\. )?(\w*\(.*\)(?: -> .+)?)$")
# Special methods a caller reaches through syntax (len(), [], iteration, with, ==, int()).
DUNDERS = {"__init__", "__len__", "__getitem__", "__setitem__", "__iter__", "__enter__", "__exit__", "__eq__",
           "__int__", "__index__", "__hash__", "__bool__", "__call__", "__str__", "__repr__", "__contains__"}


def signatures(doc: str | None) -> list[str]:
    """pybind11's signature lines: the first line, or each numbered overload after
    'Overloaded function.'."""
    lines = (doc or "").replace(PREFIX, "").strip().splitlines()
    if not lines:
        return []
    if len(lines) > 1 and lines[1].strip() == "Overloaded function.":
        return [m.group(1) for line in lines[2:] if (m := SIGNATURE.match(line.strip())) and line[:1].isdigit()]
    m = SIGNATURE.match(lines[0].strip())
    return [m.group(1)] if m else []


def is_enum(cls) -> bool:
    return isinstance(cls, type) and isinstance(getattr(cls, "__members__", None), dict) and "__entries" in cls.__dict__


def member(owner, name: str, value, module):
    if isinstance(value, type) and value.__module__ == module.__name__.split(".")[0] + ".tensorrt":
        return describe_class(value, module)
    if isinstance(value, type):
        return None
    if is_enum(type(value)):
        return {"kind": "constant", "enum": type(value).__qualname__, "member": value.name}
    if isinstance(value, property):  # pybind11_static_property is a property too
        static = type(value).__name__ == "pybind11_static_property"
        return {"kind": "static_property" if static else "property",
                "getter": (signatures(value.fget.__doc__) or [None])[0] if value.fget else None,
                "setter": (signatures(value.fset.__doc__) or [None])[0] if value.fset else None}
    if isinstance(value, staticmethod):
        return {"kind": "staticmethod", "signatures": signatures(value.__func__.__doc__)}
    if inspect.isfunction(value):  # Python code added to the class by the package's __init__.py
        return {"kind": "pymethod", "signature": str(inspect.signature(value))}
    if type(value).__name__ in ("instancemethod", "builtin_function_or_method"):
        return {"kind": "method", "signatures": signatures(value.__doc__)}
    if type(value).__name__ == "wrapper_descriptor" and name == "__init__":
        return None  # object's: pybind11 defined no constructor
    return None


def describe_class(cls, module) -> dict:
    if is_enum(cls):
        return {"kind": "enum", "qualname": cls.__qualname__,
                "members": {k: int(v) for k, v in cls.__members__.items()}}
    members = {}
    for name, value in cls.__dict__.items():
        if name.startswith("_") and name not in DUNDERS:
            continue
        entry = member(cls, name, value, module)
        if entry is not None:
            members[name] = entry
    bases = [b.__qualname__ for b in cls.__bases__ if b.__module__ == cls.__module__]
    return {"kind": "class", "qualname": cls.__qualname__, "bases": bases, "members": members}


def surface(module) -> dict:
    names = {}
    for name in sorted(vars(module)):
        if name.startswith("_") and name != "__version__":
            continue
        value = getattr(module, name)
        if inspect.ismodule(value):
            continue
        if isinstance(value, type):
            entry = describe_class(value, module)
            if value.__qualname__ != name:  # an alias (trt.Logger is not one; its own class)
                entry = {"kind": "alias", "of": value.__qualname__}
        elif is_enum(type(value)):
            entry = {"kind": "constant", "enum": type(value).__qualname__, "member": value.name}
        elif inspect.isfunction(value):
            entry = {"kind": "pyfunction", "signature": str(inspect.signature(value))}
        elif type(value).__name__ == "builtin_function_or_method":
            entry = {"kind": "function", "signatures": signatures(value.__doc__)}
        elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
            entry = {"kind": "value", "value": value}
        else:
            continue
        names[name] = entry
    return {"version": module.__version__, "python": "%d.%d" % sys.version_info[:2], "names": names}


def dumps(s: dict) -> str:
    """JSON with one line per module name and per class member, so that two releases' files diff
    line by line (`git diff --no-index surfaces/10.16.1.11.json surfaces/11.4.0.106.json`)."""
    items = []
    for name, entry in sorted(s["names"].items()):
        if entry["kind"] == "class":
            head = json.dumps({k: v for k, v in entry.items() if k != "members"}, sort_keys=True)[:-1]
            members = ",\n".join(f"   {json.dumps(k)}: {json.dumps(v, sort_keys=True)}"
                                  for k, v in sorted(entry["members"].items()))
            items.append(f"  {json.dumps(name)}: {head}, \"members\": {{\n{members}\n  }}}}")
        else:
            items.append(f"  {json.dumps(name)}: {json.dumps(entry, sort_keys=True)}")
    body = ",\n".join(items)
    return (f'{{\n "python": {json.dumps(s["python"])},\n "version": {json.dumps(s["version"])},\n'
            f' "names": {{\n{body}\n }}\n}}\n')


if __name__ == "__main__":
    import tensorrt

    with open(sys.argv[1], "w") as f:
        f.write(dumps(surface(tensorrt)))
