"""REV:PATH: results committed in git, unpacked for the reading."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from optbench.errors import OptbenchError, StepFailed
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
    assert str(error.value) == (  # named as committed, not as the unpacked copy
        f"HEAD:results/r.json is a link to {target}, out of the committed results, and optbench does not follow it: "
        "commit the file itself in its place, or check HEAD out (git worktree add DIR HEAD) and give that folder"
    )


def test_a_link_within_the_results_is_followed(tmp_path: Path, monkeypatch) -> None:
    repo = tmp_path / "repo"
    (repo / "results").mkdir(parents=True)
    (repo / "results" / "r.json").write_text("{}")
    (repo / "results" / "latest.json").symlink_to("r.json")
    _commit(repo)
    monkeypatch.chdir(repo)
    with results_at("HEAD:results") as folder:
        assert (folder / "latest.json").read_text() == "{}"


def _committed_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A repository at `tmp_path`/repo, the current folder, with results/r.json committed."""
    repo = tmp_path / "repo"
    (repo / "results").mkdir(parents=True)
    (repo / "results" / "r.json").write_text("{}")
    _commit(repo)
    monkeypatch.chdir(repo)


def test_rev_with_nothing_after_its_colon_gives_all_it_committed(tmp_path: Path, monkeypatch) -> None:
    """git archive refuses an empty path ("please use . instead")."""
    _committed_results(tmp_path, monkeypatch)
    with results_at("HEAD:") as folder:
        assert (folder / "results" / "r.json").read_text() == "{}"


@pytest.mark.parametrize("folder", ["-results", "results:old"])
def test_a_committed_folder_named_like_an_option_or_with_a_colon_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder: str
) -> None:
    """REV:PATH splits at its first colon (a revision has none), and git reads PATH as a path, never as an option."""
    repo = tmp_path / "repo"
    (repo / folder).mkdir(parents=True)
    (repo / folder / "r.json").write_text("{}")
    _commit(repo)
    monkeypatch.chdir(repo)
    with results_at(f"HEAD:{folder}") as unpacked:
        assert (unpacked / "r.json").read_text() == "{}"


def test_the_unpacked_copy_is_gone_when_the_block_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _committed_results(tmp_path, monkeypatch)
    with results_at("HEAD:results") as folder:
        assert folder.is_dir()
    assert not folder.exists() and not folder.parent.exists()


@pytest.mark.parametrize("error", [OptbenchError, StepFailed])
@pytest.mark.parametrize(
    ("spec", "inside", "said"),
    [("HEAD:results", "r.json", "HEAD:results/r.json"), ("HEAD:", "", "HEAD:")],
    ids=["a-file-in-it", "the-folder-itself"],
)
def test_an_error_in_the_block_names_the_committed_results_not_the_unpacked_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type[OptbenchError], spec: str, inside: str, said: str
) -> None:
    """As the user typed them, with the error's kind (its exit code) kept."""
    _committed_results(tmp_path, monkeypatch)
    with pytest.raises(error) as raised, results_at(spec) as folder:
        raise error(f"{folder / inside} is damaged; {folder / inside} again")
    assert type(raised.value) is error
    assert str(raised.value) == f"{said} is damaged; {said} again"


def test_a_colon_with_no_revision_before_it_is_a_path_that_does_not_exist(tmp_path: Path, monkeypatch) -> None:
    _committed_results(tmp_path, monkeypatch)
    with pytest.raises(OptbenchError) as error, results_at(":results"):
        pass
    assert str(error.value) == ":results does not exist: give a results folder, a report file, or REV:PATH from git"


def test_what_git_cannot_give_is_named_with_git_s_reason_and_the_fix(tmp_path: Path, monkeypatch) -> None:
    _committed_results(tmp_path, monkeypatch)
    with pytest.raises(OptbenchError) as error, results_at("HEAD:no-such"):
        pass
    assert str(error.value) == (
        "HEAD:no-such is neither a path nor committed results (git: fatal: pathspec 'no-such' did not match any "
        "files): check the revision and the path inside the repository"
    )


@pytest.mark.parametrize(
    ("returncode", "stderr", "reason"),
    [(128, b"warning: first\nfatal: \xff last\n", "fatal: \ufffd last"), (128, b"", "failed"), (-9, b"", "failed")],
    ids=["its-last-line-undecodable", "none", "killed-by-a-signal"],
)
def test_git_s_reason_is_its_last_line_of_errors_or_failed_when_it_gives_none(
    monkeypatch: pytest.MonkeyPatch, returncode: int, stderr: bytes, reason: str
) -> None:
    def git_fails(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(args, returncode, b"", stderr)

    monkeypatch.setattr(subprocess, "run", git_fails)
    with pytest.raises(OptbenchError) as error, results_at("HEAD:results"):
        pass
    assert str(error.value).startswith(f"HEAD:results is neither a path nor committed results (git: {reason}): ")


def test_rev_path_without_git_installed_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs"))
    with pytest.raises(OptbenchError) as error, results_at("HEAD:results"):
        pass
    assert str(error.value) == "HEAD:results names a git revision, and git is not installed"
