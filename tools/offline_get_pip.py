"""Stand-in for ansible-test's get-pip.py that needs only the package registry.

ansible-test --venv bootstraps pip by downloading get-pip.py from a host this machine cannot
reach. This file is installed in its cache instead: it takes pip from the interpreter's own
ensurepip, then installs the requested pip version from the package index as usual.
"""
import subprocess
import sys


def main() -> None:
    # get-pip.py takes pip's install arguments plus two options of its own
    args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
    subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *args])


if __name__ == "__main__":
    main()
