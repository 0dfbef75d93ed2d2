// cxx_check.h - the CHECK of the C++ API tests: one line per check, "ok"
// or "FAIL file:line: [condition]", then the message; `checks` and
// `failures` count them for the test's summary.
#ifndef XMM_TEST_CXX_CHECK_H
#define XMM_TEST_CXX_CHECK_H

#include <cstdio>

static unsigned long checks, failures;

#define CHECK(condition, ...)                                              \
    do {                                                                   \
        checks++;                                                          \
        if (condition) {                                                   \
            std::printf("ok   ");                                          \
        } else {                                                           \
            failures++;                                                    \
            std::printf("FAIL %s:%d: [%s] ", __FILE__, __LINE__, #condition); \
        }                                                                  \
        std::printf(__VA_ARGS__);                                          \
        std::printf("\n");                                                 \
        std::fflush(stdout);                                               \
    } while (0)

#endif
