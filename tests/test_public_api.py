from __future__ import annotations

import mim_o365
import mim_o365.emulator


def test_public_names_are_pinned() -> None:
    assert set(mim_o365.__all__) == {
        "BUILTIN_CLOUDS",
        "AuthenticationError",
        "Check",
        "Client",
        "Clock",
        "Cloud",
        "ConfigurationError",
        "ConflictError",
        "FakeClock",
        "FileSink",
        "MimO365Error",
        "NotFoundError",
        "PermissionDeniedError",
        "PlanConflictError",
        "PropagationTimeoutError",
        "Registration",
        "RegistrationSummary",
        "Rotation",
        "Secret",
        "SecretSink",
        "SecretState",
        "ServiceError",
        "Status",
        "SystemClock",
        "ThrottledError",
        "TransportError",
        "Unregistration",
        "UsageError",
        "Verification",
        "__version__",
    }
    assert set(mim_o365.emulator.__all__) == {
        "Emulator",
        "EmulatorError",
        "EmulatorServer",
        "Faults",
        "Knobs",
        "Lag",
        "RequestRecord",
        "RequestsAdapter",
    }
    for name in mim_o365.__all__:
        assert hasattr(mim_o365, name)


def test_version_comes_from_the_installed_package() -> None:
    assert mim_o365.__version__ != "0.0.0"


def test_errors_share_one_base_and_builtin_mixins() -> None:
    assert issubclass(mim_o365.ConfigurationError, ValueError)
    assert issubclass(mim_o365.UsageError, RuntimeError)
    for name in (
        "AuthenticationError",
        "PermissionDeniedError",
        "ServiceError",
        "TransportError",
        "PropagationTimeoutError",
        "PlanConflictError",
        "NotFoundError",
        "ThrottledError",
    ):
        assert issubclass(getattr(mim_o365, name), mim_o365.MimO365Error)
    err = mim_o365.ThrottledError("slow down", retry_after=3.0, service="graph", status_code=429)
    assert (err.retry_after, err.service, err.status_code) == (3.0, "graph", 429)
