// cxx_nothrow.cc - the nothrow forms of operator new when the new_handler
// throws: they return nullptr ([new.delete.single]: a nothrow form behaves
// as if it called the throwing form and returned null if that exits with
// an exception), while the throwing forms let the handler's exception out.
//
// Built twice: linked with libxmm.so ($(BUILD)/tests/api_cxx_nothrow), and
// plain ($(BUILD)/tests/cxx_nothrow), which finds no XMM in its process and
// runs itself again with LD_PRELOAD=$XMMTEST_BUILD/libxmm.so (else the
// libxmm.so of its build tree, $(BUILD)/tests/..).
//
// Every failing call runs in a forked child: an exception escaping a nothrow
// form (declared noexcept) terminates the process, which is then reported
// as that form's failure instead of ending the test.
#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "check.h"

// A request no allocator can satisfy.
static const std::size_t impossible = SIZE_MAX / 2;
static const std::align_val_t alignment{64};

// ---- the forms under test --------------------------------------------------

struct Form {
    const char *name;
    void *(*call)(std::size_t size);
    void (*release)(void *block);
};

static const Form nothrow_forms[] = {
    {"operator new(size, nothrow)",
     [](std::size_t size) { return ::operator new(size, std::nothrow); },
     [](void *block) { ::operator delete(block, std::nothrow); }},
    {"operator new[](size, nothrow)",
     [](std::size_t size) { return ::operator new[](size, std::nothrow); },
     [](void *block) { ::operator delete[](block, std::nothrow); }},
    {"operator new(size, align_val_t(64), nothrow)",
     [](std::size_t size) { return ::operator new(size, alignment, std::nothrow); },
     [](void *block) { ::operator delete(block, alignment, std::nothrow); }},
    {"operator new[](size, align_val_t(64), nothrow)",
     [](std::size_t size) { return ::operator new[](size, alignment, std::nothrow); },
     [](void *block) { ::operator delete[](block, alignment, std::nothrow); }},
};

static const Form throwing_forms[] = {
    {"operator new(size)", [](std::size_t size) { return ::operator new(size); },
     [](void *block) { ::operator delete(block); }},
    {"operator new[](size)", [](std::size_t size) { return ::operator new[](size); },
     [](void *block) { ::operator delete[](block); }},
    {"operator new(size, align_val_t(64))",
     [](std::size_t size) { return ::operator new(size, alignment); },
     [](void *block) { ::operator delete(block, alignment); }},
    {"operator new[](size, align_val_t(64))",
     [](std::size_t size) { return ::operator new[](size, alignment); },
     [](void *block) { ::operator delete[](block, alignment); }},
};

// ---- new_handlers that throw -------------------------------------------------

static int handler_calls;

static void throw_bad_alloc()
{
    handler_calls++;
    throw std::bad_alloc();
}

static void throw_runtime_error()
{
    handler_calls++;
    throw std::runtime_error("not a bad_alloc");
}

struct Handler {
    const char *name;
    std::new_handler function;
};

static const Handler handlers[] = {
    {"throws std::bad_alloc", throw_bad_alloc},
    {"throws std::runtime_error", throw_runtime_error},
};

// ---- children ------------------------------------------------------------------

// Outcomes, as the child's exit status.
enum Outcome {
    AS_EXPECTED = 0,
    RETURNED_A_BLOCK,    // a failing call returned non-null
    RETURNED,            // a throwing form returned instead of throwing
    WRONG_EXCEPTION,     // a throwing form threw another type than the handler
    WRONG_HANDLER_CALLS, // not exactly one call of the new_handler
    HANDLER_LOST,        // the new_handler was uninstalled
    BROKEN_AFTERWARDS,   // new failed after the failed call
};

static const char *outcome_text(int status)
{
    static char text[96];
    static const char *const outcomes[] = {
        "as expected", "returned a block", "returned instead of throwing",
        "threw another exception than the handler's", "called the new_handler more or less than once",
        "uninstalled the new_handler", "left new broken",
    };
    if (WIFEXITED(status) && WEXITSTATUS(status) <= BROKEN_AFTERWARDS)
        return outcomes[WEXITSTATUS(status)];
    if (WIFSIGNALED(status))
        std::snprintf(text, sizeof text, "killed by signal %d (%s)", WTERMSIG(status),
                      strsignal(WTERMSIG(status)));
    else
        std::snprintf(text, sizeof text, "status 0x%x", status);
    return text;
}

// Runs outcome() in a forked child; returns its wait status.
static int in_child(Outcome (*outcome)(const Form &, const Handler &), const Form &form,
                    const Handler &handler)
{
    std::fflush(stdout);
    pid_t pid = fork();
    if (pid == 0)
        _exit(outcome(form, handler));
    int status = -1;
    if (pid > 0)
        waitpid(pid, &status, 0);
    return status;
}

static Outcome after_failure(const Handler &handler)
{
    if (handler_calls != 1)
        return WRONG_HANDLER_CALLS;
    if (std::get_new_handler() != handler.function)
        return HANDLER_LOST;
    int *value = new int(7);
    bool works = *value == 7;
    delete value;
    return works ? AS_EXPECTED : BROKEN_AFTERWARDS;
}

static Outcome nothrow_fails(const Form &form, const Handler &handler)
{
    std::set_new_handler(handler.function);
    void *block = form.call(impossible);
    return block ? RETURNED_A_BLOCK : after_failure(handler);
}

static Outcome throwing_fails(const Form &form, const Handler &handler)
{
    std::set_new_handler(handler.function);
    try {
        form.release(form.call(impossible));
        return RETURNED;
    } catch (const std::bad_alloc &) {
        if (handler.function != throw_bad_alloc)
            return WRONG_EXCEPTION;
    } catch (const std::runtime_error &) {
        if (handler.function != throw_runtime_error)
            return WRONG_EXCEPTION;
    } catch (...) {
        return WRONG_EXCEPTION;
    }
    return after_failure(handler);
}

// ---- checks ----------------------------------------------------------------------

static bool is_xmm(const void *ptr)
{
    using node_of_function = int (*)(const void *);
    auto node_of = reinterpret_cast<node_of_function>(dlsym(RTLD_DEFAULT, "xmm_node_of"));
    return node_of && node_of(ptr) >= 0;
}

static void test_failing_requests()
{
    for (const Handler &handler : handlers) {
        for (const Form &form : nothrow_forms) {
            int status = in_child(nothrow_fails, form, handler);
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == AS_EXPECTED,
                  "%s with a new_handler that %s: the handler is called once, then nullptr (%s)",
                  form.name, handler.name, outcome_text(status));
        }
        for (const Form &form : throwing_forms) {
            int status = in_child(throwing_fails, form, handler);
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == AS_EXPECTED,
                  "%s with a new_handler that %s: the handler is called once, and its "
                  "exception comes out (%s)",
                  form.name, handler.name, outcome_text(status));
        }
    }
}

// With a throwing handler installed, requests that succeed never call it.
static void test_succeeding_requests()
{
    std::set_new_handler(throw_bad_alloc);
    handler_calls = 0;
    for (const Form &form : nothrow_forms) {
        void *block = form.call(100);
        CHECK(block && is_xmm(block), "%s of 100 bytes: an XMM block", form.name);
        form.release(block);
    }
    CHECK(handler_calls == 0, "succeeding requests did not call the new_handler (%d calls)",
          handler_calls);
    std::set_new_handler(nullptr);
}

// ---- the preloaded run -----------------------------------------------------------

static bool xmm_in_process()
{
    return dlsym(RTLD_DEFAULT, "xmm_node_of") != nullptr;
}

static std::string library_path()
{
    const char *build = std::getenv("XMMTEST_BUILD");
    if (build && *build)
        return std::string(build) + "/libxmm.so";
    char self[PATH_MAX] = "";
    ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
    std::string program(self, length > 0 ? static_cast<std::size_t>(length) : 0);
    return program.substr(0, program.rfind('/')) + "/../libxmm.so";
}

// Replaces this process with itself under LD_PRELOAD; returns on failure.
static void run_preloaded(char *program)
{
    std::string library = library_path();
    std::printf("note running again with LD_PRELOAD=%s\n", library.c_str());
    std::fflush(stdout);
    setenv("LD_PRELOAD", library.c_str(), 1);
    unsetenv("XMM_TEST_TIMEOUT"); // the runner's, not XMM's: XMM would warn
    char preloaded[] = "--preloaded";
    char *arguments[] = {program, preloaded, nullptr};
    execv("/proc/self/exe", arguments);
    CHECK(false, "exec of /proc/self/exe: %s", std::strerror(errno));
}

int main(int argc, char **argv)
{
    bool preloaded = argc > 1 && std::strcmp(argv[1], "--preloaded") == 0;
    if (!xmm_in_process() && !preloaded) {
        run_preloaded(argv[0]);
        return 1;
    }
    CHECK(xmm_in_process(), "libxmm.so is in the process (%s)",
          preloaded ? "preloaded" : "linked");
    if (xmm_in_process()) {
        test_failing_requests();
        test_succeeding_requests();
    }
    return check_summary("cxx_nothrow");
}
