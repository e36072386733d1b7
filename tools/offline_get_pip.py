"""Stand-in for ansible-test's get-pip.py that needs only the package registry.

ansible-test --venv bootstraps pip by downloading get-pip.py from a host this machine cannot
reach. This file is installed in its cache instead, and installs the requested pip version from
the package index into the new venv with a pip that is already there: that of the interpreter the
venv was made from (sys.base_prefix), through pip's --python option. Unpacking the interpreter's
own ensurepip first and then replacing it took about 3 CPU-s more per venv, and a sanity run on a
clean machine makes 10 of them per ansible-core. An interpreter without pip, or with one too old
for --python (pip < 22.3), gets ensurepip as before.
"""
import os
import subprocess
import sys


def base_python() -> str:
    """The interpreter the running venv was made from (ansible-test passes no variable of ours)."""
    return os.path.join(sys.base_prefix, "bin", "python%d.%d" % sys.version_info[:2])


def main() -> None:
    # get-pip.py takes pip's install arguments plus two options of its own
    args = ["install", "--disable-pip-version-check",
            *(arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel"))]
    base = base_python()
    if os.access(base, os.X_OK) and subprocess.call(
            [base, "-m", "pip", "--python", sys.executable, *args], stderr=subprocess.DEVNULL) == 0:
        return
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
    subprocess.check_call([sys.executable, "-m", "pip", *args])


if __name__ == "__main__":
    main()
