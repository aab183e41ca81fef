"""Every harvester process the tests start runs with this directory on PYTHONPATH
(`tests.conftest.HARVESTER_PYTHONPATH`), so Python loads this module first: the packages that
only the `test` extra installs cannot be imported there, as in a user's install of the harvester.

A harvester that came to import one of them would fail its tests instead of a user's run. And
sqlite-utils imports pandas whenever it can (for the types of pandas values, which the harvester
never stores): a fifth of a second at every start of a process that the tests start hundreds of.
"""

from __future__ import annotations

import importlib.abc
import sys

TEST_EXTRA_ONLY = frozenset(
    {"pandas", "matplotlib", "Bio", "rispy", "bibtexparser", "feedparser", "playwright", "nbclient"}
)


class TestExtraNotInstalled(importlib.abc.MetaPathFinder):
    """Answers an import of those packages as Python does when a package is not installed. (Not
    ``sys.modules[name] = None``: scikit-learn, which evaluate imports, takes a name present in
    sys.modules for the module itself.)"""

    def find_spec(self, fullname, path, target=None):
        if fullname.partition(".")[0] in TEST_EXTRA_ONLY:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


sys.meta_path.insert(0, TestExtraNotInstalled())
