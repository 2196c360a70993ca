"""Bokeh directory app: ``bokeh serve server --args RUN``.

Thin on purpose: the page is :func:`vecexplore.app.document.build_document`;
the run is loaded once per process by :func:`vecexplore.app.data.load_run_data`
and shared by every session. The image and export routes are registered by
``app_hooks.py`` under the same ``url_base``.
"""

import sys

from bokeh.io import curdoc

from vecexplore.app.data import load_run_data
from vecexplore.app.document import build_document

if len(sys.argv) != 2:
    raise SystemExit("usage: bokeh serve server --args RUN")
data = load_run_data(sys.argv[1])
build_document(curdoc(), data, url_base=f"/vx/{data.key}")
