/*
 * report.h - the summary at the end of a run: text for people, or one
 * JSON object (--json) for scripts such as stress/compare.py.
 */
#ifndef STRESS_REPORT_H
#define STRESS_REPORT_H

#include "runner.h"

#include <stdio.h>

void report_text(FILE *out, const struct run_result *result);
void report_json(FILE *out, const struct run_result *result);

#endif
