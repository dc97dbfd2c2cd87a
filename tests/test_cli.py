"""The command line: config errors are one clear line, exit status 2, and touch no workdir."""

import pytest

from conftest import run_main
from experiments import cli


def test_flat_keys_lists_nested_paths():
    from configs import dcgan_mnist

    keys = cli.flat_keys(dcgan_mnist.get_config())
    assert {"seed", "data", "data.dir", "model.generator.features"} <= set(keys)


@pytest.mark.parametrize(
    ("typo", "expected"),
    [("num_train_step", "num_train_steps"), ("data.dri", "data.dir"), ("sed", "seed")],
)
def test_closest_key(typo, expected):
    from configs import dcgan_mnist

    assert cli.closest_key(typo, cli.flat_keys(dcgan_mnist.get_config())) == expected


def test_config_overrides_parses_both_forms():
    spec, keys = cli.config_overrides(
        ["--config", "c.py:x", "--config.seed=3", "--config.data.dir", "/d", "--workdir=w"]
    )
    assert spec == "c.py:x"
    assert keys == ["seed", "data.dir"]


def test_misspelt_override_names_the_right_key(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "keep.txt").write_text("precious")
    result = run_main(
        "--config=configs/quickstart.py", f"--workdir={workdir}", "--config.data.dri=/x"
    )
    assert result.returncode == 2
    assert "unknown config key 'data.dri'" in result.stderr
    assert "did you mean 'data.dir'" in result.stderr
    assert "Traceback" not in result.stderr
    assert [p.name for p in workdir.iterdir()] == ["keep.txt"]


def test_missing_config_file_is_one_line(tmp_path):
    result = run_main("--config=configs/nope.py", f"--workdir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: config file not found: configs/nope.py"


def test_bad_override_value_is_one_line(tmp_path):
    result = run_main(
        "--config=configs/quickstart.py", f"--workdir={tmp_path}", "--config.seed=abc"
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: bad command line")
    assert "Traceback" not in result.stderr
