#!/usr/bin/env python3
"""Runs a command with a pseudo-terminal as its stdin, as when a user runs it in a terminal.

stdout and stderr stay this process's own (pipes to the test), so they hold only what the command
writes. Lines written to this process's stdin are typed into the terminal; the terminal's echo of
them is read and dropped. Exits with the command's exit code (128 + N when signal N ended it).
No npm native module: python3's pty module (Debian's python3).
"""
import os
import pty
import subprocess
import sys
import threading

master, slave = pty.openpty()
proc = subprocess.Popen(sys.argv[1:], stdin=slave)
os.close(slave)


def drain() -> None:
    try:
        while os.read(master, 4096):
            pass
    except OSError:
        pass


def pump() -> None:
    # Raw reads of fd 0: a daemon thread blocked in sys.stdin would hold its lock at exit.
    try:
        while data := os.read(0, 4096):
            os.write(master, data)
    except OSError:
        pass


threading.Thread(target=drain, daemon=True).start()
threading.Thread(target=pump, daemon=True).start()
code = proc.wait()
sys.stdout.flush()
sys.stderr.flush()
os._exit(128 - code if code < 0 else code)
