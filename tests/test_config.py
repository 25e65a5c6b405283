import pytest

from mlcak_lib import config
from mlcak_lib.envinfo import environment_report, git_revision, hardware


def test_profile_precedence(monkeypatch):
    monkeypatch.delenv("MLCAK_PROFILE", raising=False)
    assert config.get_profile() == "default"
    monkeypatch.setenv("MLCAK_PROFILE", "full")
    assert config.get_profile() == "full"
    assert config.get_profile("default") == "default"


def test_unknown_profile_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MLCAK_PROFILE", "fast")
    with pytest.raises(ValueError, match="Unknown profile 'fast'.*MLCAK_PROFILE"):
        config.get_profile()


def test_cache_dir_env_and_argument(monkeypatch, tmp_path):
    monkeypatch.setenv("MLCAK_CACHE_DIR", str(tmp_path / "a"))
    assert config.cache_dir() == tmp_path / "a" and (tmp_path / "a").is_dir()
    assert config.cache_dir(tmp_path / "b") == tmp_path / "b"


def test_environment_report_fields():
    report = environment_report("default")
    for key in ("python", "torch", "timm", "device", "profile", "torch threads"):
        assert key in report
    assert report["profile"] == "default"


def test_provenance_of_the_runner(tmp_path):
    info = hardware()
    assert set(info) == {"cpu_model", "cpu_cores", "torch_threads", "device"} and info["torch_threads"] >= 1
    rev, dirty = git_revision()
    assert isinstance(rev, str) and rev and dirty in (True, False, None)
    assert git_revision(tmp_path) == ("unknown", None)  # outside a git checkout
