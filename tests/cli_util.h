// Running the built `paft` program from the tests: exit code and captured output.
#pragma once

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

inline const std::string kPaft = PAFT_BINARY;

inline std::string slurp(const std::filesystem::path & path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline void spit(const std::filesystem::path & path, const std::string & text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    ASSERT_TRUE(out.good()) << "cannot write " << path;
}

inline std::string shell_quote(const std::string & arg) {
    std::string q = "'";
    for (char c : arg) {
        q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    }
    return q + "'";
}

struct RunResult {
    int         code = -1;  // exit status; 128 + signal when killed by a signal
    std::string out, err;
};

// Runs the shell command `cmd` with stdout and stderr captured in files under `dir`.
inline RunResult run_captured(std::string cmd, const std::filesystem::path & dir) {
    static int        counter = 0;
    const std::string tag     = std::to_string(counter++);
    const std::filesystem::path    out     = dir / ("stdout." + tag), err = dir / ("stderr." + tag);
    // Built with append(): `" " + std::string` trips a GCC 12 -Wrestrict false positive.
    cmd.append(" >").append(shell_quote(out.string()));
    cmd.append(" 2>").append(shell_quote(err.string()));
    cmd.append(" </dev/null");
    const int status = std::system(cmd.c_str());
    RunResult r;
    if (status != -1 && WIFEXITED(status)) {
        r.code = WEXITSTATUS(status);
    } else if (status != -1 && WIFSIGNALED(status)) {
        r.code = 128 + WTERMSIG(status);
    }
    r.out = slurp(out);
    r.err = slurp(err);
    std::filesystem::remove(out);
    std::filesystem::remove(err);
    return r;
}

inline std::string paft_command(const std::vector<std::string> & args) {
    std::string cmd = shell_quote(kPaft);
    for (const std::string & a : args) {
        cmd.append(" ").append(shell_quote(a));
    }
    return cmd;
}

// Runs `paft args...` with stdout and stderr captured in files under `dir`.
inline RunResult run_paft(const std::vector<std::string> & args, const std::filesystem::path & dir) {
    return run_captured(paft_command(args), dir);
}

// mpirun as the tests start it: as root in CI, and with more ranks than this machine's cores.
inline const std::vector<std::string> kMpirun = {"mpirun", "--allow-run-as-root", "--oversubscribe"};

inline bool have_mpirun() { return std::system("command -v mpirun >/dev/null 2>&1") == 0; }

// One MPI job of several programs (mpirun's `-np 1 paft A : -np 1 paft B`): each entry is a rank
// count and the arguments its ranks get.
inline RunResult run_mpi(const std::vector<std::pair<int, std::vector<std::string>>> & apps,
                         const std::filesystem::path & dir) {
    std::string cmd;
    for (const std::string & word : kMpirun) {
        cmd.append(cmd.empty() ? "" : " ").append(word);
    }
    for (size_t i = 0; i < apps.size(); i++) {
        cmd.append(i ? " : -np " : " -np ").append(std::to_string(apps[i].first)).append(" ");
        cmd.append(paft_command(apps[i].second));
    }
    return run_captured(cmd, dir);
}

// `mpirun -np ranks paft args...`.
inline RunResult run_mpi(int ranks, const std::vector<std::string> & args, const std::filesystem::path & dir) {
    return run_mpi(std::vector<std::pair<int, std::vector<std::string>>>{{ranks, args}}, dir);
}

inline size_t count_of(const std::string & text, const std::string & needle) {
    size_t n = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) {
        n++;
    }
    return n;
}

inline std::string describe(const RunResult & r) {
    return "exit code " + std::to_string(r.code) + "\n--- stdout ---\n" + r.out + "--- stderr ---\n" + r.err;
}

// Bad input: exit code 2, one `paft: error: ` message on stderr containing every needle.
inline void expect_input_error(const RunResult & r, const std::vector<std::string> & needles) {
    EXPECT_EQ(r.code, 2) << describe(r);
    EXPECT_NE(r.err.find("paft: error: "), std::string::npos) << describe(r);
    for (const std::string & needle : needles) {
        EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr does not mention \"" << needle << "\"\n"
                                                          << describe(r);
    }
    EXPECT_EQ(r.out, "") << "nothing should reach stdout on error";
}

// Usage errors come from the option parser: exit code 2 and a message naming the problem.
inline void expect_usage_error(const RunResult & r, const std::vector<std::string> & needles) {
    EXPECT_EQ(r.code, 2) << describe(r);
    for (const std::string & needle : needles) {
        EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr does not mention \"" << needle << "\"\n"
                                                          << describe(r);
    }
}

// Starts `paft args...` in the background; returns its pid.
inline pid_t spawn_paft(const std::vector<std::string> & args, const std::filesystem::path & log) {
    std::fflush(stdout);  // or the child would write the test's buffered output again
    std::fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        FILE * f = std::freopen(log.c_str(), "w", stderr);
        (void) f;
        std::freopen("/dev/null", "w", stdout);
        std::vector<char *> argv = {const_cast<char *>(kPaft.c_str())};
        for (const std::string & a : args) {
            argv.push_back(const_cast<char *>(a.c_str()));
        }
        argv.push_back(nullptr);
        execv(kPaft.c_str(), argv.data());
        _exit(127);
    }
    return pid;
}
