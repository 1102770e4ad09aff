"""Every YAML the toolkit reads goes through one bounded reader: hostile documents are one line
naming the file and the line, never a traceback or a hang; YAML merge keys are YAML and work."""

from __future__ import annotations

import re

import pytest
import yaml

from at2seld_edge.config import load_config
from at2seld_edge.data.spec import load_dataset
from at2seld_edge.deploy.budgets import load_budget
from at2seld_edge.deploy.devices import load_device
from at2seld_edge.errors import EdgeError
from at2seld_edge.search.space import load_space
from at2seld_edge.yamlfile import yaml_mapping
from tests.conftest import preset_dict

READERS = {"model config": load_config, "dataset spec": load_dataset, "budget": load_budget, "device": load_device,
           "search space": lambda p: load_space(str(p))}

# (what the second line of a document holds, what the one-line error says); each of these was a
# traceback (ValueError, RecursionError, TypeError, OverflowError) or silently accepted
BAD = {
    "5000-digit integer": ("x: " + "9" * 5000, "integer with 5000 digits; integers here are 64-bit"),
    "integer past 64 bits": ("x: 0x" + "f" * 30, "does not fit in 64 bits"),
    "inf": ("x: .inf", ".inf is not a finite number"),
    "nan": ("x: [1, .NaN]", ".NaN is not a finite number"),
    "float overflow": ("x: 1.0e+400", "1.0e+400 is not a finite number"),
    "10,000-deep list": ("x: " + "[" * 10_000 + "]" * 10_000, "nested deeper than 32 levels"),
    "10,000-deep mapping": ("x: " + "{a: " * 10_000 + "1" + "}" * 10_000, "nested deeper than 32 levels"),
    "list as a key": ("? [a, b]\n: 1", "a key must be a plain value (a name), not a list"),
    "mapping as a key": ("? {a: 1}\n: 1", "a key must be a plain value (a name), not a mapping"),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("case", BAD)
def test_every_reader_refuses_a_hostile_document_in_one_line(tmp_path, reader, case):
    text, message = BAD[case]
    path = tmp_path / "file.yaml"
    path.write_text("name: x\n" + text + "\n")
    with pytest.raises(EdgeError) as e:
        READERS[reader](path)
    assert str(e.value).startswith(f"{path}:2: ") and message in str(e.value)
    assert "\n" not in str(e.value) and e.value.exit_code == 1


@pytest.mark.parametrize("text, message", [
    # each level doubles: 2**40 values once expanded, from 40 short lines (PyYAML builds it shared)
    ("a0: &a0 [x, x]\n" + "".join(f"a{k}: &a{k} [*a{k - 1}, *a{k - 1}]\n" for k in range(1, 40)),
     "more than 1,000,000 values (YAML aliases counted where they are used)"),
    ("x: &a [1, *a]\n", "a value that contains itself (a recursive alias)"),
    ("x: &a {b: [*a]}\n", "a value that contains itself"),
])
def test_alias_bombs_and_recursive_aliases_are_refused_unexpanded(text, message):
    with pytest.raises(EdgeError, match=re.escape(message)):
        yaml_mapping(text, "f.yaml", "config")


def test_merge_keys_are_accepted_own_keys_win_and_duplicates_are_still_refused(tmp_path):
    d = preset_dict()
    text = yaml.safe_dump({k: v for k, v in d.items() if k != "track_transformer"}, sort_keys=False)
    text += ("track_transformer: &tt {d_model: 64, layers: 1, heads: 4, ff_mult: 2, dropout: 0.1}\n"
             "smoother:\n  <<: [{hidden: 32, layers: 1}, {causal: false}]\n  hidden: 64\n")
    text = text.replace("smoother:\n  hidden: 64\n  layers: 1\n  causal: false\n", "", 1)
    path = tmp_path / "merged.yaml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.smoother.hidden == 64 and cfg.smoother.layers == 1  # own key over the merged 32
    assert cfg.fingerprint() == load_config("at2seld-nano").fingerprint()
    space = tmp_path / "space.yaml"
    space.write_text("stage2: &s\n  smoother.layers: {choices: [1, 2]}\nstage3:\n  <<: *s\n  "
                     "training.lr: {low: 1.0e-4, high: 1.0e-2}\n")
    assert set(load_space(str(space)).stage3) == {"smoother.layers", "training.lr"}
    with pytest.raises(EdgeError, match=r"f.yaml:3: not valid YAML: key 'a' appears twice \(lines 2 and 3\)"):
        yaml_mapping("b: &b {a: 1}\na: 1\na: 2\n<<: *b\n", "f.yaml", "config")


@pytest.mark.parametrize("text, message", [
    ("[" * 10_000 + "]" * 10_000, "nested deeper than 32 levels"),
    ('{"a": ' * 40 + "1" + "}" * 40, "nested deeper than 32 levels"),
    ('{"n": ' + "7" * 5000 + "}", "integer with 5000 digits"),
    ('{"n": -9223372036854775809}', "does not fit in 64 bits"),
    ('{"x": [Infinity]}', "Infinity is not a finite number"),
    ('{"x": NaN}', "NaN is not a finite number"),
    ('{"x": 2e308}', "2e308 is not a finite number"),
    ('{"x": ', "f.json:1: not valid JSON"),
])
def test_json_records_have_the_same_bounds(text, message):
    from at2seld_edge.yamlfile import json_value

    with pytest.raises(EdgeError, match=re.escape(message)) as e:
        json_value(text, "f.json", "record")
    assert str(e.value).startswith("f.json")
