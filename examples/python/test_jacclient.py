#!/usr/bin/python3
"""Offline checks of jacclient.compare, the function that decides PASS or FAIL (needs the stubs: ./generate.sh).

    /usr/bin/python3 test_jacclient.py
"""

import math
import unittest
from types import SimpleNamespace

import jacclient


def tensor(data, shape=None):
    return SimpleNamespace(shape=shape or [len(data)], data=data)


REF = {"shape": [4], "data": [1.0, -2.0, 3.0, 0.5]}


class CompareTest(unittest.TestCase):
    def test_a_float32_rounding_matches(self):
        ok, _ = jacclient.compare(tensor([1.0000001, -2.0, 3.0000002, 0.5]), REF, 1e-4)
        self.assertTrue(ok)

    def test_a_nan_anywhere_fails(self):
        for i in range(len(REF["data"])):
            got = list(REF["data"])
            got[i] = math.nan
            ok, detail = jacclient.compare(tensor(got), REF, 1e-4)
            self.assertFalse(ok, f"NaN at index {i} passed: {detail}")
            self.assertIn(f"at flat index {i},", detail)

    def test_an_infinity_fails(self):
        ok, _ = jacclient.compare(tensor([1.0, math.inf, 3.0, 0.5]), REF, 1e-4)
        self.assertFalse(ok)

    def test_an_error_past_the_tolerance_fails_at_its_index(self):
        ok, detail = jacclient.compare(tensor([1.0, -2.0, 3.01, 0.5]), REF, 1e-4)
        self.assertFalse(ok)
        self.assertIn("at flat index 2,", detail)

    def test_a_wrong_shape_or_a_missing_tensor_fails(self):
        self.assertFalse(jacclient.compare(tensor(REF["data"], [2, 2]), REF, 1e-4)[0])
        self.assertFalse(jacclient.compare(None, REF, 1e-4)[0])


if __name__ == "__main__":
    unittest.main()
