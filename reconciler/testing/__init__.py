"""Test doubles shipped with reconciler: a fake HE server and scripted hosts."""
