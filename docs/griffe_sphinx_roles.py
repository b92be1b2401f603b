"""Griffe extension of the docs build: numpydoc Sphinx roles become Markdown.

``:class:`~skfungi.FungiTransformer``` becomes a cross-reference link (shown as
``FungiTransformer``) when the target is a fully qualified ``skfungi`` name;
any other role (a relative name, another library's object) becomes inline
code, and so does ``:mod:`` (the API pages document classes and functions, not
modules, so a module has no page to link to). ``~`` keeps the last dotted part
only, as in Sphinx.
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(attr|class|data|exc|func|meth|mod|obj):`(~?)([^`]+)`")


def markdown_for_role(match: re.Match) -> str:
    role, short, target = match.group(1), match.group(2) == "~", match.group(3).strip()
    shown = f"`{target.rsplit('.', 1)[-1] if short else target}`"
    return (
        f"[{shown}][{target}]"
        if target.startswith("skfungi.") and role != "mod"
        else shown
    )


class SphinxRoles(griffe.Extension):
    """Rewrite the roles of every loaded docstring before mkdocstrings parses it."""

    def on_object(self, *, obj, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(markdown_for_role, obj.docstring.value)
