#!/usr/bin/env python3
"""Renders a geni-lib profile to its request RSpec offline, as the portal does.

    render.py PROFILE OUT.xml [NAME=VALUE ...]

Runs PROFILE the way the CloudLab portal runs it: geni-lib in portal mode,
parameter values from a JSON file, the RSpec written to a file (no
network, no portal). VALUE is JSON when it parses as JSON (3, true,
"text"), a plain string otherwise. Exit status: PROFILE's, so a parameter
the profile refuses (pc.reportError) exits 100 + the number of errors, with
the errors as JSON on stderr.

Needs geni-lib from PyPI (`pip install geni-lib`). Its last release there
(0.9.9.4) is not all Python 3 yet (the portal runs a newer geni-lib of its
own): geni/portal.py has four Python 2 `print` statements, so it does not
import, and Request.writeXML writes bytes to a text file. This loads
geni/portal.py with those statements turned into calls, and writes the
RSpec with geni-lib's own Request.toXMLString as text. How the RSpec is
built (every class a profile uses) is geni-lib's, as installed.
"""

import json
import os
import re
import runpy
import sys
import tempfile
import types


def load_portal():
    import geni  # the installed package; fails clearly when geni-lib is missing

    path = os.path.join(os.path.dirname(geni.__file__), "portal.py")
    with open(path, encoding="utf-8") as f:
        source = f.read()
    try:
        code = compile(source, path, "exec")
    except SyntaxError:
        # `print x, y` -> `print(x, y)`, one statement a line.
        fixed = re.sub(r"^(\s*)print (?!\()(.+?)\s*$", r"\1print(\2)", source, flags=re.M)
        code = compile(fixed, path, "exec")
    module = types.ModuleType("geni.portal")
    module.__file__ = path
    module.__package__ = "geni"
    sys.modules["geni.portal"] = module
    exec(code, module.__dict__)  # noqa: S102 (geni-lib's own module)
    geni.portal = module

    from geni.rspec import pg

    def write_xml(request, path):
        text = request.toXMLString(pretty_print=True, ucode=True)
        if path is None:
            sys.stdout.write(text)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)

    pg.Request.writeXML = write_xml


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    profile, out = sys.argv[1], sys.argv[2]
    values = {}
    for arg in sys.argv[3:]:
        name, sep, text = arg.partition("=")
        if not sep or not name:
            print(f"render.py: want NAME=VALUE, got {arg!r}", file=sys.stderr)
            return 2
        try:
            values[name] = json.loads(text)
        except ValueError:
            values[name] = text
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(values, f)
        params_path = f.name
    try:
        # Portal mode: Context() reads these when geni.portal is loaded.
        os.environ["GENILIB_PORTAL_MODE"] = "1"
        os.environ["GENILIB_PORTAL_PARAMS_PATH"] = params_path
        os.environ["GENILIB_PORTAL_REQUEST_PATH"] = os.path.abspath(out)
        load_portal()
        # The profile imports geni.portal: it gets the module loaded above.
        sys.argv = [profile]
        runpy.run_path(profile, run_name="__main__")
    finally:
        os.unlink(params_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
