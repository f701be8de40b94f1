// llama.cpp as the tests' oracle of paft export (tools/llamacpp/oracle.mjs over node-llama-cpp's
// prebuilt build, installed in PAFT_LLAMACPP by the llamacpp_oracle fixture).
#pragma once

#include "io/fs.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>

// Runs one request through llama.cpp (see oracle.mjs's header for the requests); the request, the
// result and llama.cpp's log go through files in `work`. Test failure and an empty object on an
// error.
inline nlohmann::json llama_cpp(const nlohmann::json & request, const std::filesystem::path & work) {
    const std::string oracle = std::string(PAFT_SOURCE_DIR) + "/tools/llamacpp/oracle.mjs";
    const std::filesystem::path in = work / "oracle-request.json", out = work / "oracle-result.json",
                                err = work / "oracle-stderr";
    paft::write_file_atomic(in.string(), request.dump());
    const std::string cmd = "node '" + oracle + "' '" + PAFT_LLAMACPP + "' < '" + in.string() + "' > '" + out.string() +
                            "' 2> '" + err.string() + "'";
    const int                  rc     = std::system(cmd.c_str());
    const nlohmann::json       result = nlohmann::json::parse(paft::read_file(out.string()), nullptr, false);
    if (rc != 0 || result.is_discarded() || result.contains("error")) {
        ADD_FAILURE() << "llama.cpp oracle failed (rc " << rc << "): " << paft::read_file(out.string()) << "\n"
                      << paft::read_file(err.string());
        return nlohmann::json::object();
    }
    return result;
}
