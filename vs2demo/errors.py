"""The one error type for what a user did wrong, and the one for a model that cannot be loaded."""


def shown(value) -> str:
    """A value as a message quotes it: short, whatever a caller sent."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class UserInputError(ValueError):
    """A bad file, an empty prompt, a video too long: the message says what to do instead.

    Raised before any GPU work where possible; the app and the CLI show the message as it is
    and go on with the next request.
    """


class ModelLoadError(RuntimeError):
    """The model could not be loaded (no GPU, missing weights, a missing package).

    The message is meant for a person: what is needed instead of a stack trace.
    """


class ModelUnavailableError(ModelLoadError):
    """The real model cannot run on this machine (no CUDA GPU, or not downloaded and the Hub out of
    reach): nothing the user typed is wrong, so the app can come up on the toy model instead."""
