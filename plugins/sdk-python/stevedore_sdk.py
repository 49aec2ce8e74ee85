"""The guest side of the Stevedore plugin world, for plugin authors who write Python.

A category is a subclass of :class:`Category` plus one line naming it as the
component's ``Executor``::

    import stevedore_sdk as sdk

    class Hello(sdk.Category):
        NAME = "hello"
        SUMMARY = "Say hello"
        PARAMS_SCHEMA = {
            "type": "object",
            "properties": {"name": {"type": "string", "description": "Who to greet."}},
            "required": ["name"],
            "additionalProperties": False,
        }

        def run(self, params):
            sdk.progress(100, "hello, " + params["name"])

    Executor = sdk.executor(Hello)

Params arrive as a dict, already checked against ``PARAMS_SCHEMA`` (a JSON
Schema; the subset :func:`check_schema` knows) with its defaults filled in;
a mismatch is a 400 whose message names the field (``name: must be a
string``). The same schema is what ``describe()`` reports, so the server's
OpenAPI document, the dashboard's form and ``stevedore plugin check`` show
it. The interfaces a category uses besides ``task`` are declared once, in
``plugin.toml``; ``stevedore plugin build`` gives the component exactly
those imports and :func:`capabilities` reports them.

Errors are exceptions: raise :class:`InvalidParams`, :class:`NotFound`,
:class:`Conflict`, :class:`Denied`, :class:`RuntimeFailed`,
:class:`Cancelled` or :class:`Failed`; a host call wrapped in :func:`call`
raises them too. Any other exception ends the task as ``other`` with its
text. Secrets: fields named in ``SECRET_FIELDS`` (and ``password``) are
masked by the host; :func:`mark_secret` marks one more value from
``validate``.
"""

import json
import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import executor as _executor
from wit_world.imports import task as _task
from wit_world.imports import types as _types

try:  # Written by the build from `plugin.toml`.
    from _stevedore_capabilities import CAPABILITIES as _CAPABILITIES
except ImportError:  # pragma: no cover - only outside a build
    _CAPABILITIES = []

__all__ = [
    "Category", "executor", "call", "capabilities", "check_schema",
    "progress", "debug", "info", "warn", "error", "sleep", "cancelled",
    "check_cancelled", "mark_secret", "pointer", "task_id", "user",
    "PluginError", "InvalidParams", "NotFound", "Conflict", "Denied",
    "RuntimeFailed", "Cancelled", "Failed", "Level", "RuntimeKind",
]

#: Log levels and runtime kinds of the WIT `types` interface.
Level = _types.Level
RuntimeKind = _types.RuntimeKind


# ---- errors ---------------------------------------------------------------

class PluginError(Exception):
    """A failure the host maps to an HTTP status or a task result code."""

    def to_wit(self):
        """This error as the WIT `error` variant."""
        return _types.Error_Other(str(self))


class InvalidParams(PluginError):
    """Bad params: ``InvalidParams("tag", "must be a string")`` reads ``tag: must be a string``."""

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field = field

    def to_wit(self):
        return _types.Error_InvalidParams(str(self))


class NotFound(PluginError):
    """A named image, container, file or registry does not exist."""

    def to_wit(self):
        return _types.Error_NotFound(str(self))


class Conflict(PluginError):
    """The request conflicts with the current state."""

    def to_wit(self):
        return _types.Error_Conflict(str(self))


class Denied(PluginError):
    """The host refused (not granted, not yours, outside the share)."""

    def to_wit(self):
        return _types.Error_Denied(str(self))


class RuntimeFailed(PluginError):
    """The container runtime failed; the text is its message."""

    def to_wit(self):
        return _types.Error_Runtime(str(self))


class Cancelled(PluginError):
    """The task was cancelled."""

    def __init__(self, message="cancelled"):
        super().__init__(message)

    def to_wit(self):
        return _types.Error_Cancelled()


class Failed(PluginError):
    """Any other failure, in words."""


def _from_wit(err):
    """The SDK exception for a WIT `error` value a host call returned."""
    name = type(err).__name__
    text = getattr(err, "value", None)
    if name == "Error_InvalidParams":
        e = InvalidParams.__new__(InvalidParams)
        PluginError.__init__(e, text)
        e.field = text.split(":", 1)[0]
        return e
    kinds = {
        "Error_NotFound": NotFound,
        "Error_Conflict": Conflict,
        "Error_Denied": Denied,
        "Error_Runtime": RuntimeFailed,
        "Error_Other": Failed,
    }
    if name == "Error_Cancelled":
        return Cancelled()
    return kinds.get(name, Failed)(text if text is not None else repr(err))


def call(function, *args):
    """Call a host function (``images.list``, ...), raising the SDK's
    exceptions for the WIT errors it returns."""
    try:
        return function(*args)
    except Err as e:
        raise _from_wit(e.value) from None


# ---- the task -------------------------------------------------------------

def progress(percent, detail):
    """Report progress (`percent` -1 for unknown, else 0..=100) with a detail line."""
    _task.progress(max(-1, min(100, int(percent))), detail)


def debug(message):
    """Log at debug level."""
    _task.log(Level.DEBUG, message)


def info(message):
    """Log at info level."""
    _task.log(Level.INFO, message)


def warn(message):
    """Log at warn level."""
    _task.log(Level.WARN, message)


def error(message):
    """Log at error level."""
    _task.log(Level.ERROR, message)


def sleep(millis):
    """Wait up to `millis` ms without using the CPU budget; True when cancelled meanwhile."""
    return _task.sleep(int(millis))


def cancelled():
    """Whether the task has been cancelled."""
    return _task.cancelled()


def check_cancelled():
    """Raise :class:`Cancelled` when the task was cancelled."""
    if _task.cancelled():
        raise Cancelled()


def mark_secret(ptr):
    """From ``validate``: show the params value at JSON Pointer `ptr` as ``"******"``."""
    _task.mark_secret(ptr)


def pointer(parent, key):
    """The JSON Pointer of `key` in the object at `parent` (``""`` for the params)."""
    return parent + "/" + str(key).replace("~", "~0").replace("/", "~1")


def task_id():
    """The task's id."""
    return _task.id()


def user():
    """The user who submitted the task."""
    return _task.user()


def capabilities():
    """The interfaces declared in ``plugin.toml``, with ``task`` first."""
    return ["task"] + [c for c in _CAPABILITIES if c != "task"]


# ---- JSON Schema ------------------------------------------------------------

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool)
    or isinstance(v, float) and v.is_integer(),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}

_ARTICLE = {"object": "an object", "array": "an array", "integer": "an integer", "null": "null"}

_KNOWN = {
    "type", "properties", "required", "additionalProperties", "items", "enum",
    "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "pattern", "minItems", "maxItems", "default",
    "description", "title", "examples", "$schema", "$id", "format",
}


def _field(path):
    return path or "params"


def _join(path, key):
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def check_schema(schema, value, path=""):
    """Check `value` against `schema` and return it with defaults filled in;
    raise :class:`InvalidParams` naming the first field that does not fit.

    The subset known: ``type`` (one or a list), ``properties``,
    ``required``, ``additionalProperties`` (bool or schema), ``items``,
    ``enum``, ``const``, ``minimum``, ``maximum``, ``exclusiveMinimum``,
    ``exclusiveMaximum``, ``minLength``, ``maxLength``, ``pattern``,
    ``minItems``, ``maxItems`` and ``default``; annotations
    (``description``, ``title``, ``examples``, ``format``) are ignored.
    A keyword outside the subset is refused, so a schema never promises a
    check that is not made.
    """
    unknown = sorted(set(schema) - _KNOWN)
    if unknown:
        raise Failed(f"params schema: keyword `{unknown[0]}` is not supported by stevedore_sdk")
    field = _field(path)
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        if not any(_TYPES[t](value) for t in names):
            wanted = " or ".join(_ARTICLE.get(t, "a " + t) for t in names)
            raise InvalidParams(field, f"must be {wanted}")
    if "const" in schema and value != schema["const"]:
        raise InvalidParams(field, f"must be {json.dumps(schema['const'])}")
    if "enum" in schema and value not in schema["enum"]:
        raise InvalidParams(field, "must be one of " + ", ".join(json.dumps(e) for e in schema["enum"]))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise InvalidParams(field, f"must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise InvalidParams(field, f"must be at most {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            raise InvalidParams(field, f"must be more than {schema['exclusiveMinimum']}")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            raise InvalidParams(field, f"must be less than {schema['exclusiveMaximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            raise InvalidParams(field, f"must have at least {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise InvalidParams(field, f"must have at most {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise InvalidParams(field, f"must match {schema['pattern']}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            raise InvalidParams(field, f"must list at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise InvalidParams(field, f"must list at most {schema['maxItems']} items")
        items = schema.get("items")
        if isinstance(items, dict):
            value = [check_schema(items, v, _join(path, i)) for i, v in enumerate(value)]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                raise InvalidParams(_join(path, name), "is required")
        extra = schema.get("additionalProperties", True)
        out = {}
        for name, v in value.items():
            if name in props:
                out[name] = check_schema(props[name], v, _join(path, name))
            elif extra is False:
                known = ", ".join(props) or "none"
                raise InvalidParams(_join(path, name), f"unknown field (known: {known})")
            elif isinstance(extra, dict):
                out[name] = check_schema(extra, v, _join(path, name))
            else:
                out[name] = v
        for name, sub in props.items():
            if name not in out and isinstance(sub, dict) and "default" in sub:
                out[name] = json.loads(json.dumps(sub["default"]))
        value = out
    return value


def decode(schema, text):
    """Parse params JSON `text` and check it against `schema`."""
    try:
        value = json.loads(text)
    except ValueError as e:
        raise InvalidParams("params", f"not JSON: {e}") from None
    return check_schema(schema, value)


# ---- the category -----------------------------------------------------------

class Category:
    """A task category: set the class attributes, override ``run`` (and
    ``validate`` for checks beyond the schema)."""

    #: Category name, as in ``POST background/{name}``.
    NAME = ""
    #: One line saying what the category does.
    SUMMARY = ""
    #: Whether a running task may be deleted (it is cancelled first).
    DELETABLE = False
    #: Params fields whose values are secret (``password`` always is).
    SECRET_FIELDS = []
    #: The params' JSON Schema (a dict), checked before ``validate`` and ``run``.
    PARAMS_SCHEMA = {"type": "object"}

    def validate(self, params):
        """Check params beyond the schema; runs at submit time and must not touch the runtime."""

    def run(self, params):
        """Run the task; the returned text, if any, becomes the final ``detail_state``."""
        raise NotImplementedError


def _as_wit(e):
    if isinstance(e, PluginError):
        return Err(e.to_wit())
    return Err(_types.Error_Other(f"{type(e).__name__}: {e}"))


def executor(category):
    """The component's ``Executor`` class for the :class:`Category` subclass `category`."""
    schema_text = json.dumps(category.PARAMS_SCHEMA)

    class _Executor(exports.Executor):
        def describe(self):
            return _executor.Description(
                name=category.NAME,
                deletable=bool(category.DELETABLE),
                capabilities=capabilities(),
                summary=category.SUMMARY,
                secret_fields=list(category.SECRET_FIELDS),
                params_schema=schema_text,
            )

        def validate(self, params):
            try:
                category().validate(decode(category.PARAMS_SCHEMA, params))
            except Exception as e:  # every failure crosses as a WIT error
                raise _as_wit(e) from None

        def run(self):
            try:
                out = category().run(decode(category.PARAMS_SCHEMA, _task.params()))
            except Exception as e:
                raise _as_wit(e) from None
            return None if out is None else str(out)

    _Executor.__name__ = "Executor"
    return _Executor
