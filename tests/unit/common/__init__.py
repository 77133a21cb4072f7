"""Unit tests of `common`: catalogue, formats, outbound rules, webhook signing."""
