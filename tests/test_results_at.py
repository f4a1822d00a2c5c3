"""REV:PATH: results committed in git, unpacked for the reading."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from optbench.errors import OptbenchError
from optbench.results_at import results_at


def _commit(repo: Path) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "results"], check=True)


@pytest.mark.parametrize("target", ["../../outside.json", "/etc/hostname"])
def test_a_committed_link_out_of_the_results_is_refused_naming_it(tmp_path: Path, monkeypatch, target: str) -> None:
    # tar's "data" filter refuses to unpack such a link: its FilterError ended the command in a traceback
    repo = tmp_path / "repo"
    (repo / "results").mkdir(parents=True)
    (repo / "results" / "r.json").symlink_to(target)
    _commit(repo)
    monkeypatch.chdir(repo)
    with pytest.raises(OptbenchError) as error, results_at("HEAD:results"):
        pass
    message = str(error.value)
    assert message.startswith(f"HEAD:results/r.json is a link to {target}, out of the committed results, and")
    assert "commit the file itself" in message and "optbench-results-" not in message  # not the unpacked copy


def test_a_link_within_the_results_is_followed(tmp_path: Path, monkeypatch) -> None:
    repo = tmp_path / "repo"
    (repo / "results").mkdir(parents=True)
    (repo / "results" / "r.json").write_text("{}")
    (repo / "results" / "latest.json").symlink_to("r.json")
    _commit(repo)
    monkeypatch.chdir(repo)
    with results_at("HEAD:results") as folder:
        assert (folder / "latest.json").read_text() == "{}"
