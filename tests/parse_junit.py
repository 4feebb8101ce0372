#!/usr/bin/env python3
"""Parses a JUnit XML file with junitparser (as CI systems read it) and prints, as JSON, the
suite totals and each test case's name, class name and result (passed, failure, skipped,
error) with the failure message."""

import json
import sys

from junitparser import Error, Failure, JUnitXml, Skipped

xml = JUnitXml.fromfile(sys.argv[1])
suites = list(xml) if hasattr(xml, "__iter__") else [xml]
out = dict(tests=0, failures=0, skipped=0, errors=0, cases=[])
for suite in suites:
    out["tests"] += suite.tests
    out["failures"] += suite.failures
    out["skipped"] += suite.skipped
    out["errors"] += suite.errors
    for case in suite:
        result, message = "passed", None
        for r in case.result:
            if isinstance(r, Failure):
                result, message = "failure", r.message
            elif isinstance(r, Skipped):
                result, message = "skipped", r.message
            elif isinstance(r, Error):
                result, message = "error", r.message
        out["cases"].append(dict(name=case.name, classname=case.classname, result=result,
                                 message=message))
json.dump(out, sys.stdout)
