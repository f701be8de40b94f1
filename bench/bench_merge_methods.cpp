// Benchmark: merge_tensor of each method on one large tensor (default [11008, 4096], a 7B MLP
// weight: 45M entries) with random deltas, one thread. Prints the seconds per merge (the second
// of two runs, so buffers are warm) and ns per entry; it asserts nothing about time.
//
//   build/bench-merge-methods --rows 11008 --cols 4096 --models 2 --methods ties,dare_ties
#include "core/random.h"
#include "merge/methods.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

using namespace paft;

int main(int argc, char ** argv) {
    CLI::App    app{"merge_tensor per method on one large tensor"};
    size_t      rows = 11008, cols = 4096, models = 2;
    std::string methods = "linear,task_arithmetic,ties,dare_ties,dare_linear,breadcrumbs_ties,della,slerp,model_stock";
    app.add_option("--rows", rows);
    app.add_option("--cols", cols);
    app.add_option("--models", models);
    app.add_option("--methods", methods, "comma-separated method names");
    CLI11_PARSE(app, argc, argv);

    const size_t                    n = rows * cols;
    std::vector<float>              base(n);
    std::vector<std::vector<float>> deltas(models, std::vector<float>(n));
    Random                          rng(1);
    for (float & x : base) {
        x = 0.02f * rng.normal();
    }
    for (auto & d : deltas) {
        for (float & x : d) {
            x = 0.001f * rng.normal();
        }
    }
    std::stringstream list(methods);
    std::string       name;
    while (std::getline(list, name, ',')) {
        const MergeMethodDef * m = find_merge_method(name);
        if (!m) {
            fmt::print(stderr, "unknown method {}\n", name);
            return 2;
        }
        const size_t count = name == "slerp" ? 1 : models;
        ParamLookup  lookup = [](const std::string & p, int) -> std::optional<ParamScalar> {
            ParamScalar v;
            if (p == "weight" || p == "t") {
                v.number = 0.5;
            } else if (p == "density") {
                v.number = 0.5;
            } else {
                return std::nullopt;
            }
            return v;
        };
        const TensorParams p = resolve_tensor_params(*m, count, lookup, "bench");
        TensorInput        in;
        in.name = "model.layers.0.mlp.down_proj.weight";
        in.rows = rows;
        in.cols = cols;
        in.n    = n;
        in.base = base.data();
        for (size_t i = 0; i < count; i++) {
            in.deltas.push_back(deltas[i].data());
        }
        MergeScratch       scratch;
        std::vector<float> out(n);
        double             seconds = 0;
        for (int rep = 0; rep < 2; rep++) {
            const auto t0 = std::chrono::steady_clock::now();
            merge_tensor(*m, in, p, scratch, out.data());
            seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
        fmt::print("{:<18} {} models  {:8.3f} s  {:6.2f} ns/entry\n", name, count, seconds, 1e9 * seconds / n);
    }
    return 0;
}
