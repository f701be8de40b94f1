#include "train/checkpoint.h"

#include "core/error.h"
#include "io/fs.h"
#include "io/json_depth.h"
#include "io/safetensors.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <filesystem>

namespace paft {
namespace fs = std::filesystem;
using json   = nlohmann::ordered_json;

namespace {

std::string checkpoint_dir(const std::string & out_dir, long step) {
    return fmt::format("{}/checkpoint-{}", out_dir, step);
}

// Steps of the complete checkpoints in out_dir, newest first. Leftover .tmp folders (a run killed
// while writing one) are removed.
std::vector<long> checkpoint_steps(const std::string & out_dir) {
    std::vector<long> steps;
    if (!is_folder(out_dir)) {
        return steps;
    }
    for (const fs::directory_entry & e : fs::directory_iterator(out_dir)) {
        const std::string name = e.path().filename().string();
        if (!e.is_directory() || name.rfind("checkpoint-", 0) != 0) {
            continue;
        }
        if (name.size() > 4 && name.substr(name.size() - 4) == ".tmp") {
            fs::remove_all(e.path());
            continue;
        }
        const std::string digits = name.substr(11);
        if (!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos &&
            path_exists(e.path() / "trainer_state.json")) {
            steps.push_back(std::stol(digits));
        }
    }
    std::sort(steps.rbegin(), steps.rend());
    return steps;
}

TrainerState state_from_json(const std::string & path) {
    const std::string text = read_file(path);
    check_json_depth(text, path);
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
        throw InputError(fmt::format("{}: not valid JSON", path));
    }
    try {
        TrainerState s;
        s.global_step  = j.at("global_step").get<long>();
        s.total_steps  = j.at("total_steps").get<long>();
        s.num_tokens   = j.at("num_tokens").get<long>();
        s.fingerprint  = j.at("fingerprint").get<std::string>();
        s.window_sums  = j.at("window_sums").get<std::map<std::string, double>>();
        s.window_steps = j.at("window_steps").get<long>();
        s.log_bytes    = j.at("log_bytes").get<long>();
        return s;
    } catch (const json::exception & e) {
        throw InputError(fmt::format("{}: {}", path, e.what()));
    }
}

}  // namespace

void write_checkpoint(const std::string & out_dir, const TrainerState & state, const Optimizer & optimizer,
                      const std::function<void(const std::string & folder)> & write_weights) {
    const std::string dir = checkpoint_dir(out_dir, state.global_step), tmp = dir + ".tmp";
    fs::remove_all(tmp);
    make_dirs(tmp);
    write_weights(tmp);
    const auto                 buffers = optimizer.state();
    std::vector<TensorToWrite> tensors;
    for (const auto & [name, values] : buffers) {
        tensors.push_back({name, {(int64_t) values.size()}, values.data(), DType::F32});
    }
    write_safetensors(tmp + "/optimizer.safetensors", tensors, {{"steps", std::to_string(optimizer.steps())}});
    json j = {{"global_step", state.global_step}, {"total_steps", state.total_steps},
              {"num_tokens", state.num_tokens},   {"fingerprint", state.fingerprint},
              {"window_sums", state.window_sums}, {"window_steps", state.window_steps},
              {"log_bytes", state.log_bytes}};
    write_file_atomic(tmp + "/trainer_state.json", j.dump(2) + "\n");
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::rename(tmp, dir, ec);
    if (ec) {
        throw RuntimeFailure(fmt::format("{}: cannot rename to {}: {}", tmp, dir, ec.message()));
    }
}

void write_checkpoint(const std::string & out_dir, const TrainerState & state, const LoraAdapter & adapter,
                      const Optimizer & optimizer, const std::string & base_model) {
    write_checkpoint(out_dir, state, optimizer, [&](const std::string & folder) { adapter.save(folder, base_model); });
}

std::optional<long> latest_checkpoint_step(const std::string & out_dir) {
    std::vector<long> steps = checkpoint_steps(out_dir);
    return steps.empty() ? std::nullopt : std::optional<long>(steps.front());
}

std::optional<TrainerState> read_latest_checkpoint(const std::string & out_dir, Optimizer & optimizer,
                                                   const std::function<void(const std::string & folder)> & read_weights) {
    std::optional<long> step = latest_checkpoint_step(out_dir);
    if (!step) {
        return std::nullopt;
    }
    const std::string dir   = checkpoint_dir(out_dir, *step);
    TrainerState      state = state_from_json(dir + "/trainer_state.json");
    read_weights(dir);
    TensorStore                               store = TensorStore::open_file(dir + "/optimizer.safetensors");
    std::map<std::string, std::vector<float>> buffers;
    for (const std::string & name : store.names()) {
        std::vector<int64_t> shape;
        buffers[name] = store.read_f32_any(name, &shape);
    }
    SafetensorsFile file(dir + "/optimizer.safetensors");
    auto            it = file.metadata().find("steps");
    if (it == file.metadata().end() || it->second.find_first_not_of("0123456789") != std::string::npos ||
        it->second.empty()) {
        throw InputError(fmt::format("{}/optimizer.safetensors: metadata 'steps' is missing or not a count", dir));
    }
    optimizer.set_state(buffers, std::stol(it->second));
    return state;
}

std::optional<TrainerState> read_latest_checkpoint(const std::string & out_dir, const ModelConfig & model,
                                                   LoraAdapter & adapter, Optimizer & optimizer) {
    return read_latest_checkpoint(out_dir, optimizer,
                                  [&](const std::string & folder) { adapter = LoraAdapter::load(folder, model); });
}

void truncate_file(const std::string & path, long bytes) {
    std::string keep = path_exists(path) ? read_file(path) : std::string();
    if ((long) keep.size() < bytes) {
        throw InputError(fmt::format("{}: shorter ({} bytes) than the checkpoint recorded ({} bytes)", path,
                                     keep.size(), bytes));
    }
    keep.resize(bytes);
    write_file_atomic(path, keep);
}

}  // namespace paft
