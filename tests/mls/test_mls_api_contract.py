"""The MLS Web API contract (tests/contracts/): Python runs the same calls, results and error
codes as the JS API (web/test/mls-api-contract.test.js runs the same files)."""

from __future__ import annotations

import dataclasses
import inspect
import json
from typing import Any

import pytest

import mls.errors
from mls import MLS, GroupConfig, GroupView
from mls.errors import MLSError
from mls.wire.enums import WireFormat

from conftest import CONTRACTS

API = json.loads((CONTRACTS / "mls_api.json").read_text())
ERROR_CODES = json.loads((CONTRACTS / "mls_error_codes.json").read_text())["codes"]


def _error_classes() -> dict[str, type[MLSError]]:
    return {
        name: cls
        for name, cls in inspect.getmembers(mls.errors, inspect.isclass)
        if issubclass(cls, MLSError) and cls.__module__ == "mls.errors"
    }


def test_every_error_class_has_its_code_from_the_list() -> None:
    listed = {entry["python"]: entry["code"] for entry in ERROR_CODES}
    classes = _error_classes()
    assert set(classes) == set(listed)
    for name, cls in classes.items():
        assert cls.__dict__.get("code") == listed[name], name  # its own attribute, not inherited
    codes = [entry["code"] for entry in ERROR_CODES]
    assert len(codes) == len(set(codes))


def _client(options: dict[str, Any]) -> MLS:
    fields: dict[str, Any] = {}
    for key, value in options.items():
        if key == "handshake_wire_format":
            fields[key] = WireFormat[value.upper()]
        elif key == "commit_received_proposals":
            fields[key] = value
        else:
            raise AssertionError(f"unknown client option {key}")
    return MLS(config=GroupConfig(**fields))


def _resolve(ref: str, saved: dict[str, Any]) -> Any:
    name, *path = ref[1:].split(".")
    value = saved[name]
    for part in path:
        value = getattr(value, part)
    return value


def _argument(arg: Any, saved: dict[str, Any]) -> Any:
    if isinstance(arg, str):
        assert arg.startswith("$"), arg
        return _resolve(arg, saved)
    if isinstance(arg, dict):
        if "text" in arg:
            return arg["text"]
        if "hex" in arg:
            return bytes.fromhex(arg["hex"])
        raise AssertionError(f"unknown argument form {arg}")
    return arg


def _match(value: Any, expected: Any, saved: dict[str, Any], where: str) -> None:
    if expected is None:
        assert value is None, f"{where}: {value!r} is not None"
    elif expected == "bytes":
        assert isinstance(value, bytes) and value, f"{where}: {value!r} is not non-empty bytes"
    elif expected == "view":
        assert isinstance(value, GroupView), f"{where}: {value!r} is not a GroupView"
    elif isinstance(expected, bool) or isinstance(expected, (int, str)):
        assert value == expected and type(value) is type(expected), f"{where}: {value!r} != {expected!r}"
    elif isinstance(expected, dict) and "text" in expected:
        assert value == expected["text"].encode(), f"{where}: {value!r} != {expected['text']!r}"
    elif isinstance(expected, dict) and "hex" in expected:
        assert value == bytes.fromhex(expected["hex"]), f"{where}: {value!r} != {expected['hex']}"
    elif isinstance(expected, dict) and "bytes_len" in expected:
        assert isinstance(value, bytes) and len(value) == expected["bytes_len"], f"{where}: {value!r}"
    elif isinstance(expected, dict) and "same" in expected:
        assert value == _resolve(expected["same"], saved), f"{where}: differs from {expected['same']}"
    elif isinstance(expected, dict) and "differs" in expected:
        assert value != _resolve(expected["differs"], saved), f"{where}: same as {expected['differs']}"
    elif isinstance(expected, dict) and "items" in expected:
        assert isinstance(value, (tuple, list)) and len(value) == len(expected["items"]), f"{where}: {value!r}"
        for index, (item, item_expected) in enumerate(zip(value, expected["items"])):
            _match(item, item_expected, saved, f"{where}[{index}]")
    elif isinstance(expected, dict):
        assert dataclasses.is_dataclass(value), f"{where}: {value!r} is not a result object"
        names = {f.name for f in dataclasses.fields(value)}
        for key, item_expected in expected.items():
            assert key in names, f"{where}: no field {key}"
            _match(getattr(value, key), item_expected, saved, f"{where}.{key}")
    else:
        raise AssertionError(f"{where}: unknown matcher {expected!r}")


def _run_step(step: dict[str, Any], saved: dict[str, Any]) -> None:
    target = saved[step["on"]]
    where = f"{step['on']}.{step.get('call') or step.get('get')}"
    if "get" in step:
        _match(getattr(target, step["get"]), step["expect"], saved, where)
        return
    args = [_argument(arg, saved) for arg in step.get("args", [])]
    method = getattr(target, step["call"])
    if "raises" in step:
        with pytest.raises(MLSError) as caught:
            method(*args)
        assert caught.value.code == step["raises"], f"{where}: {type(caught.value).__name__}: {caught.value}"
        return
    result = method(*args)
    if "save" in step:
        saved[step["save"]] = result
    if "expect" in step:
        _match(result, step["expect"], saved, where)


@pytest.mark.parametrize("scenario", API["scenarios"], ids=[s["name"] for s in API["scenarios"]])
def test_scenario(scenario: dict[str, Any]) -> None:
    saved: dict[str, Any] = {name: _client(options) for name, options in scenario["clients"].items()}
    for index, step in enumerate(scenario["steps"]):
        try:
            _run_step(step, saved)
        except AssertionError as exc:
            raise AssertionError(f"step {index}: {exc}") from None


def test_every_error_code_of_the_contract_is_listed() -> None:
    codes = {entry["code"] for entry in ERROR_CODES}
    used = {step["raises"] for scenario in API["scenarios"] for step in scenario["steps"] if "raises" in step}
    assert used and used <= codes
