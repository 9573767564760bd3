"""Registry of site modules: which module handles a target."""

from __future__ import annotations

import importlib

from archiver.errors import UsageError
from archiver.sites.base import Site, SiteOptions

# name -> "module:Class"; imported lazily so `archiver check` does not pay for every site module.
_SITES = {
    "arxiv": "archiver.sites.arxiv:ArxivSite",
    "generic": "archiver.sites.generic:GenericSite",
}
# Tried in this order when no --site is given; generic takes any http(s) URL, so it comes last.
_AUTODETECT = ["arxiv", "generic"]


def site_names() -> list[str]:
    return sorted(_SITES)


def site_class(name: str) -> type[Site]:
    try:
        spec = _SITES[name]
    except KeyError:
        raise UsageError(f"unknown site module {name!r}; known: {', '.join(site_names())}") from None
    module, cls = spec.split(":")
    return getattr(importlib.import_module(module), cls)


def get_site(name: str, options: SiteOptions | None = None) -> Site:
    return site_class(name)(options)


def detect_site(target: str) -> str:
    """The name of the site module that recognises `target`, or a UsageError that says what is accepted."""
    for name in _AUTODETECT:
        if site_class(name).recognises(target):
            return name
    raise UsageError(
        f"cannot tell what {target!r} is: give an arXiv id (2108.07258, 2108.07258v2, hep-th/9901001, "
        "arxiv:2108.07258), an arXiv URL, or an http(s) URL; --site NAME forces a site module"
    )
