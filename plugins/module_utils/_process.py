# -*- coding: utf-8 -*-
# Copyright: contributors to ebpf.deploy
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to ebpf.deploy: the one place the collection's module_utils start a process on the host.

AnsibleModule.run_command is not at hand where these run: the files that talk to the kernel never
import Ansible, and the host runtime (the confirm watcher, ``restore`` at boot) runs them with no
module at all; the watcher itself must outlive the module's process. So every command goes through
these two functions, and only this file asks the standard library to start one. ansible-core
2.21's sanity (pylint ansible-bad-function) asks module_utils for run_command; the two calls below
say in place that they are the exception, as ansible-core's own module_utils do.
"""
from __future__ import annotations

import subprocess
from typing import Optional, Sequence, Union

# what the callers catch besides OSError (a timeout)
SubprocessError = subprocess.SubprocessError


def run(argv: Sequence[str], *, stdin: Union[bytes, str, None] = None, text: bool = True,
        timeout: Optional[float] = None) -> subprocess.CompletedProcess:
    """Run `argv` to its end with its output captured; never raises for a non-zero status."""
    return subprocess.run(  # pylint: disable=ansible-bad-function
        list(argv), input=stdin, capture_output=True, text=text, check=False, timeout=timeout)


def start_detached(argv: Sequence[str], *, log_path: str) -> int:
    """Start `argv` in a session of its own (no inherited descriptors, stdin closed, output appended
    to `log_path`, cwd /), not waited for: it outlives this process. Returns its pid."""
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd="/", start_new_session=True,
            close_fds=True)
    proc.returncode = 0  # detached on purpose: no ResourceWarning for a child we never wait for
    return proc.pid
