"""The ``skfungi`` command: ``extract`` FUNGI features to a file, run the ``demo``, print ``info``.

Installed as the console script ``skfungi`` (also ``python -m skfungi``).
See ``docs/cli.md`` and ``skfungi <command> --help``. Errors end the command
with one line on stderr and a non-zero exit status (``--traceback`` shows
the Python traceback instead).

Modules, one job each: :mod:`~skfungi.cli.main` (parser and entry point,
importing nothing heavy), :mod:`~skfungi.cli.extract` (the extraction's
steps), :mod:`~skfungi.cli.fitting` (fit, save, load the transformer),
:mod:`~skfungi.cli.inputs`, :mod:`~skfungi.cli.chunks` (resumable partial
results), :mod:`~skfungi.cli.outputs`, :mod:`~skfungi.cli.progress` (bars),
:mod:`~skfungi.cli.console` (logging, silencing, signals),
:mod:`~skfungi.cli.info` and :mod:`~skfungi.cli.demo`.
"""

from .main import main

__all__ = ["main"]
