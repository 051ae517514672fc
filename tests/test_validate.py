"""tau from users: finite and 0 < tau < 4 on the CLI and in the Python API, and a warning when it is
looser than the model was calibrated for."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_verify.cli import main
from edge_verify.errors import ConfigError
from edge_verify.validate import check_tau, finite_float

from .conftest import lfw_photo


@pytest.mark.parametrize("bad", ["100", "4", "0", "-1", "nan", "NaN", "inf", "-inf", "1e400", "abc", "", True, None])
def test_bad_tau_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match=r"must be|expected a number") as err:
        check_tau(bad)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("good", "value"), [("0.9", 0.9), (1.356489, 1.356489), (" 2 ", 2.0), (3.99, 3.99)])
def test_good_tau_is_kept(good: object, value: float) -> None:
    assert check_tau(good) == value


def test_finite_float() -> None:
    assert finite_float("1e3") == 1000.0
    with pytest.raises(ValueError, match="finite"):
        finite_float(float("nan"))


@pytest.mark.parametrize("bad", ["100", "inf", "nan", "-0.5"])
def test_cli_refuses_bad_tau(bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["verify", "--claim", "x", str(lfw_photo("Tony_Blair", 18)), "--tau", bad,
              "--state-dir", str(tmp_path)])
    assert stop.value.code == 2
    assert "argument --tau:" in capsys.readouterr().err


def test_verifier_refuses_nan_and_inf(tmp_path: Path) -> None:
    from edge_verify.pipeline import FaceVerifier

    for bad in (float("nan"), float("inf"), 100.0):
        with pytest.raises(ConfigError, match="tau must be"):
            FaceVerifier(state_dir=tmp_path, tau=bad)
    assert FaceVerifier(state_dir=tmp_path, tau=2.0).tau == 2.0


def test_cli_warns_when_tau_is_looser_than_calibrated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = str(lfw_photo("Tony_Blair", 18))
    assert main(["enroll", "tony", photo, "--state-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["verify", "--claim", "tony", photo, "--tau", "2.0", "--state-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "warning: --tau 2.0000 is looser than the 'convenient' security level" in err
    assert main(["verify", "--claim", "tony", photo, "--tau", "1.0", "--state-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().err == ""
