"""Errors that reach the user as one line and exit code 2."""

from importlib import metadata


class OptbenchError(Exception):
    """A problem with the user's input: the message names the bad value and the fix."""

    exit_code = 2


class StepFailed(OptbenchError):
    """A step whose outside tool failed (a peer's pipeline, or the environment it runs in): the run records
    the failure with its reason and goes on with the other chains."""

    exit_code = 1


def require_package(package: str, *, needed_for: str, install: str) -> metadata.Distribution:
    """The installed distribution `package`; missing, an error that says what needs it and how to install it."""
    try:
        return metadata.distribution(package)
    except metadata.PackageNotFoundError as exc:
        raise OptbenchError(f"{needed_for} needs the {package} package: {install}") from exc
