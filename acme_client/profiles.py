"""Which ACME profile an order asks for (draft-aaron-acme-profiles), from the directory's offer."""

from __future__ import annotations

from certman.acme_client.resources import DirectoryInfo
from certman.acme_client.settings import AcmeSettings

from certman.errors import ConfigError


def chosen_profile(info: DirectoryInfo, settings: AcmeSettings) -> str | None:
    """The configured profile when the server offers profiles; None when either has none.

    A configured profile the server does not offer is refused, naming the setting.
    """
    wanted = settings.profile
    if wanted is None or not info.profiles:
        return None
    if wanted not in info.profiles:
        raise ConfigError(
            f"The ACME server offers no profile {wanted!r} (it offers: "
            f"{', '.join(info.profiles)}); set issuers.{settings.name}.profile in "
            f"{settings.config_path} to one of those, or remove it."
        )
    return wanted
