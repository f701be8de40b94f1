// safetensors reading, writing and f16/bf16 conversions. Expected values are worked out by hand
// from the IEEE formats (bf16: 1+8+7 bits, f16: 1+5+10 bits, bias 15), never from the code.
#include <unistd.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/fs.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace paft;

namespace {

float    bits_f32(uint32_t u) { return std::bit_cast<float>(u); }

// A fresh, empty folder per test, removed afterwards.
class SafetensorsTest : public ::testing::Test {
protected:
    void SetUp() override { dir_ = fresh_test_folder("paft-st"); }
    void TearDown() override { fs::remove_all(dir_); }

    std::string path(const std::string & name) const { return (dir_ / name).string(); }

    // Writes raw bytes to `name` in the test folder and returns its path.
    std::string write_raw(const std::string & name, const std::string & bytes) const {
        std::ofstream(path(name), std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        return path(name);
    }

    // A safetensors file by hand: the 8-byte little-endian header length (`declared_len`, or the
    // true length), the header text unpadded, then `data`.
    std::string write_st(const std::string & name, const std::string & header, const std::string & data = "",
                         uint64_t declared_len = UINT64_MAX) const {
        const uint64_t len = declared_len == UINT64_MAX ? header.size() : declared_len;
        std::string    bytes(8, '\0');
        for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((len >> (8 * i)) & 0xFF);
        return write_raw(name, bytes + header + data);
    }

    std::vector<std::string> folder_entries() const {
        std::vector<std::string> names;
        for (const auto & entry : fs::directory_iterator(dir_)) names.push_back(entry.path().filename().string());
        std::sort(names.begin(), names.end());
        return names;
    }

    fs::path dir_;
};

// Little-endian bytes of values of type T.
template <typename T> std::string le_bytes(std::initializer_list<T> values) {
    std::string out;
    for (T v : values) {
        char buf[sizeof(T)];
        std::memcpy(buf, &v, sizeof(T));
        out.append(buf, sizeof(T));
    }
    return out;
}

}  // namespace

// ---- conversions --------------------------------------------------------------------------

TEST(Conversions, Bf16ToF32) {
    EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
    EXPECT_EQ(bf16_to_f32(0xC000), -2.0f);
    EXPECT_EQ(bf16_to_f32(0x3F82), 1.015625f);                  // 1 + 2/128
    EXPECT_EQ(bf16_to_f32(0x0001), std::ldexp(1.0f, -133));     // smallest subnormal: 2^-126 x 2^-7
    EXPECT_EQ(bf16_to_f32(0x7F80), std::numeric_limits<float>::infinity());
    EXPECT_EQ(bf16_to_f32(0xFF80), -std::numeric_limits<float>::infinity());
    EXPECT_TRUE(std::isnan(bf16_to_f32(0x7FC0)));
    EXPECT_TRUE(std::signbit(bf16_to_f32(0x8000)));
}

TEST(Conversions, F16ToF32) {
    EXPECT_EQ(f16_to_f32(0x3C00), 1.0f);
    EXPECT_EQ(f16_to_f32(0xC000), -2.0f);
    EXPECT_EQ(f16_to_f32(0x3C01), 1.0f + std::ldexp(1.0f, -10));
    EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);                     // (2 - 2^-10) x 2^15
    EXPECT_EQ(f16_to_f32(0x0400), std::ldexp(1.0f, -14));        // smallest normal
    EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));        // smallest subnormal
    EXPECT_EQ(f16_to_f32(0x03FF), std::ldexp(1023.0f, -24));     // largest subnormal
    EXPECT_EQ(f16_to_f32(0x8001), -std::ldexp(1.0f, -24));
    EXPECT_EQ(f16_to_f32(0x7C00), std::numeric_limits<float>::infinity());
    EXPECT_EQ(f16_to_f32(0xFC00), -std::numeric_limits<float>::infinity());
    EXPECT_TRUE(std::isnan(f16_to_f32(0x7E00)));
    EXPECT_TRUE(std::isnan(f16_to_f32(0x7C01)));  // signalling NaN stays NaN
    EXPECT_EQ(f16_to_f32(0x0000), 0.0f);
    EXPECT_TRUE(std::signbit(f16_to_f32(0x8000)));
}

TEST(Conversions, F32ToBf16RoundsToNearestEven) {
    EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
    EXPECT_EQ(f32_to_bf16(-2.0f), 0xC000);
    EXPECT_EQ(f32_to_bf16(bits_f32(0x3F808000)), 0x3F80);  // 1 + 2^-8: tie, 0x3F80 is even -> down
    EXPECT_EQ(f32_to_bf16(bits_f32(0x3F818000)), 0x3F82);  // tie, 0x3F81 is odd -> up
    EXPECT_EQ(f32_to_bf16(bits_f32(0x3F808001)), 0x3F81);  // just above the tie -> up
    EXPECT_EQ(f32_to_bf16(bits_f32(0x3F807FFF)), 0x3F80);  // just below the tie -> down
    EXPECT_EQ(f32_to_bf16(bits_f32(0x7F7FFFFF)), 0x7F80);  // largest float rounds up to Inf
    EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7F80);
    EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xFF80);
    EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
    EXPECT_EQ(f32_to_bf16(bits_f32(0x00000001)), 0x0000);  // tiny subnormal rounds to zero
    EXPECT_EQ(f32_to_bf16(bits_f32(0x00018000)), 0x0002);  // subnormal tie, odd -> up
}

TEST(Conversions, F32ToBf16KeepsNaN) {
    for (uint32_t nan : {0x7FC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu}) {
        const uint16_t h = f32_to_bf16(bits_f32(nan));
        EXPECT_EQ(h & 0x7F80, 0x7F80) << std::hex << nan;
        EXPECT_NE(h & 0x007F, 0) << std::hex << nan;  // not Inf
        EXPECT_EQ(h & 0x8000, (nan >> 16) & 0x8000) << std::hex << nan;
    }
}

TEST(Conversions, F32ToF16RoundsToNearestEven) {
    EXPECT_EQ(f32_to_f16(1.0f), 0x3C00);
    EXPECT_EQ(f32_to_f16(-2.0f), 0xC000);
    EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);
    EXPECT_EQ(f32_to_f16(65519.0f), 0x7BFF);  // below the 65520 midpoint
    EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);  // midpoint, 0x7BFF is odd -> Inf
    EXPECT_EQ(f32_to_f16(1e6f), 0x7C00);
    EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);      // tie, even -> down
    EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie, 0x3C01 odd -> up
    EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14)), 0x0400);             // smallest normal
    EXPECT_EQ(f32_to_f16(std::ldexp(1023.0f, -24)), 0x03FF);          // largest subnormal
    EXPECT_EQ(f32_to_f16(std::ldexp(2047.0f, -25)), 0x0400);  // 1023.5 x 2^-24: tie, odd -> up into normals
    EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
    EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);   // half the smallest subnormal: tie -> 0
    EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -26)), 0x0001);   // 0.75 x 2^-24 -> 1
    EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);   // 1.5 x 2^-24: tie, 1 odd -> 2
    EXPECT_EQ(f32_to_f16(std::ldexp(5.0f, -25)), 0x0002);   // 2.5 x 2^-24: tie, 2 even -> 2
    EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -30)), 0x0000);
    EXPECT_EQ(f32_to_f16(-std::ldexp(1.0f, -30)), 0x8000);
    EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
    EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::infinity()), 0x7C00);
    EXPECT_EQ(f32_to_f16(-std::numeric_limits<float>::infinity()), 0xFC00);
}

TEST(Conversions, F32ToF16KeepsNaN) {
    for (uint32_t nan : {0x7FC00000u, 0x7F800001u, 0xFF800001u}) {
        const uint16_t h = f32_to_f16(bits_f32(nan));
        EXPECT_EQ(h & 0x7C00, 0x7C00) << std::hex << nan;
        EXPECT_NE(h & 0x03FF, 0) << std::hex << nan;  // not Inf
        EXPECT_EQ(h & 0x8000, (nan >> 16) & 0x8000) << std::hex << nan;
    }
}

TEST(Conversions, DTypeNamesAndSizes) {
    EXPECT_STREQ(dtype_name(DType::BF16), "BF16");
    EXPECT_STREQ(dtype_name(DType::BOOL), "BOOL");
    EXPECT_EQ(dtype_size(DType::F64), 8u);
    EXPECT_EQ(dtype_size(DType::F16), 2u);
    EXPECT_EQ(dtype_size(DType::U8), 1u);
}

// ---- round trips --------------------------------------------------------------------------

TEST_F(SafetensorsTest, RoundTripWithMetadata) {
    const std::vector<float> w32 = {1.0f, -2.5f, 0.1f, 3e-3f, 7.0f, -0.0f};
    // bf16 roundings: 1+2^-8 tie -> 1.0; 1+3x2^-8 tie -> 1+2^-6; 3 and -0.5 exact.
    const std::vector<float> wbf = {bits_f32(0x3F808000), bits_f32(0x3F818000), 3.0f, -0.5f};
    // f16 roundings: 1+2^-11 tie -> 1.0; 1+3x2^-11 tie -> 1+2^-9; 65504 and 2^-24 exact.
    const std::vector<float> w16 = {1.0f + std::ldexp(1.0f, -11), 1.0f + 3 * std::ldexp(1.0f, -11), 65504.0f,
                                    std::ldexp(1.0f, -24)};
    const std::string file = path("out.safetensors");
    write_safetensors(file,
                      {{"b.w32", {2, 3}, w32.data(), DType::F32},
                       {"a.wbf", {4}, wbf.data(), DType::BF16},
                       {"c.w16", {2, 2}, w16.data(), DType::F16}},
                      {{"format", "pt"}, {"note", "hi"}});

    SafetensorsFile st(file);
    const std::map<std::string, std::string> expected_meta = {{"format", "pt"}, {"note", "hi"}};
    EXPECT_EQ(st.metadata(), expected_meta);
    ASSERT_EQ(st.tensors().size(), 3u);
    // Data follow the given order: 24 bytes of F32, 8 of BF16, 8 of F16.
    EXPECT_EQ(st.tensors()[0].name, "b.w32");
    EXPECT_EQ(st.tensors()[1].name, "a.wbf");
    EXPECT_EQ(st.tensors()[2].name, "c.w16");
    const uint64_t data_start = st.tensors()[0].begin;
    EXPECT_EQ(data_start % 8, 0u);  // header padded to 8-byte alignment
    EXPECT_EQ(st.tensors()[0].end, data_start + 24);
    EXPECT_EQ(st.tensors()[1].begin, data_start + 24);
    EXPECT_EQ(st.tensors()[2].end, data_start + 40);
    EXPECT_EQ(fs::file_size(file), data_start + 40);
    EXPECT_EQ(st.tensors()[1].dtype, DType::BF16);
    EXPECT_EQ(st.tensors()[2].shape, (std::vector<int64_t>{2, 2}));
    EXPECT_EQ(st.find("a.wbf"), &st.tensors()[1]);
    EXPECT_EQ(st.find("nope"), nullptr);

    // Raw bytes of the narrowed tensors, little-endian.
    const auto bf = st.bytes(st.tensors()[1]);
    ASSERT_EQ(bf.size(), 8u);
    EXPECT_EQ(bf[0], 0x80);
    EXPECT_EQ(bf[1], 0x3F);
    EXPECT_EQ(bf[2], 0x82);
    EXPECT_EQ(bf[3], 0x3F);

    const TensorStore store = TensorStore::open_file(file);
    EXPECT_EQ(store.names(), (std::vector<std::string>{"a.wbf", "b.w32", "c.w16"}));
    EXPECT_TRUE(store.has("c.w16"));
    EXPECT_FALSE(store.has("d"));
    EXPECT_EQ(store.read_f32("b.w32", {2, 3}), w32);
    EXPECT_EQ(store.read_f32("a.wbf", {4}), (std::vector<float>{1.0f, 1.015625f, 3.0f, -0.5f}));
    EXPECT_EQ(store.read_f32("c.w16", {2, 2}),
              (std::vector<float>{1.0f, 1.0f + std::ldexp(1.0f, -9), 65504.0f, std::ldexp(1.0f, -24)}));
    std::vector<int64_t> shape;
    EXPECT_EQ(store.read_f32_any("b.w32", &shape), w32);
    EXPECT_EQ(shape, (std::vector<int64_t>{2, 3}));
    float dst[4] = {};
    store.read_f32("a.wbf", {4}, dst);
    EXPECT_EQ(dst[1], 1.015625f);
}

TEST_F(SafetensorsTest, NoMetadataKeyWhenEmptyAndScalarsAndEmptyTensors) {
    const float one = 1.0f;
    const std::string file = path("x.safetensors");
    write_safetensors(file, {{"scalar", {}, &one, DType::F32}, {"empty", {0, 5}, nullptr, DType::BF16}});
    const std::string text = read_file(file);
    EXPECT_EQ(text.find("__metadata__"), std::string::npos);
    const TensorStore store = TensorStore::open_file(file);
    EXPECT_EQ(store.read_f32("scalar", {}), std::vector<float>{1.0f});
    EXPECT_TRUE(store.read_f32("empty", {0, 5}).empty());
    EXPECT_EQ(store.info("empty").numel(), 0);
}

TEST_F(SafetensorsTest, LargeBf16TensorUsesChunksAndThreads) {
    // Three write chunks of 2^20 elements, not a multiple of the chunk size.
    const size_t       n = (2u << 20) + 12345;
    std::vector<float> values(n);
    for (size_t i = 0; i < n; ++i) values[i] = static_cast<float>(i % 256);  // exact in bf16 (8 bits)
    const std::string file = path("big.safetensors");
    write_safetensors(file, {{"w", {static_cast<int64_t>(n)}, values.data(), DType::BF16}});
    EXPECT_EQ(TensorStore::open_file(file).read_f32("w", {static_cast<int64_t>(n)}), values);
}

TEST_F(SafetensorsTest, ReadsUnalignedDataOfEveryFloatType) {
    // The data start at an offset that is 3 mod 8, aligned for none of the types.
    std::string header =
        R"({"f32":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
        R"("f64":{"dtype":"F64","shape":[1],"data_offsets":[8,16]},)"
        R"("bf":{"dtype":"BF16","shape":[1],"data_offsets":[16,18]},)"
        R"("h":{"dtype":"F16","shape":[1],"data_offsets":[18,20]}})";
    while ((8 + header.size()) % 8 != 3) header += ' ';
    const std::string data = le_bytes<float>({1.0f, -2.0f}) + le_bytes<double>({0.5}) +
                             le_bytes<uint16_t>({0xC000}) + le_bytes<uint16_t>({0x3C00});
    const TensorStore store = TensorStore::open_file(write_st("u.safetensors", header, data));
    EXPECT_EQ(store.read_f32("f32", {2}), (std::vector<float>{1.0f, -2.0f}));
    EXPECT_EQ(store.read_f32("f64", {1}), std::vector<float>{0.5f});
    EXPECT_EQ(store.read_f32("bf", {1}), std::vector<float>{-2.0f});
    EXPECT_EQ(store.read_f32("h", {1}), std::vector<float>{1.0f});
}

TEST_F(SafetensorsTest, ShardedWriteAndOpenDir) {
    // 64 + 16 bytes fit a 100-byte shard; 200 bytes get their own; 32 bytes start a third.
    const std::vector<float> a(16, 1.0f), b(4, 2.0f), c(50, 3.0f), d(8, 4.0f);
    const std::string        out = path("sub/model");
    write_safetensors_sharded(out, "model",
                              {{"a", {4, 4}, a.data()}, {"b", {4}, b.data()}, {"c", {50}, c.data()}, {"d", {8}, d.data()}},
                              100, {{"format", "pt"}});

    EXPECT_FALSE(fs::exists(out + "/model.safetensors"));
    const std::vector<std::string> shards = {"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                             "model-00003-of-00003.safetensors"};
    for (const std::string & shard : shards) {
        ASSERT_TRUE(fs::exists(out + "/" + shard)) << shard;
        EXPECT_EQ(SafetensorsFile(out + "/" + shard).metadata().at("format"), "pt");
    }
    const auto index = nlohmann::json::parse(read_file(out + "/model.safetensors.index.json"));
    EXPECT_EQ(index["metadata"]["total_size"], 312);  // 64 + 16 + 200 + 32
    const nlohmann::json expected_map = {{"a", shards[0]}, {"b", shards[0]}, {"c", shards[1]}, {"d", shards[2]}};
    EXPECT_EQ(index["weight_map"], expected_map);

    const TensorStore store = TensorStore::open_dir(out);
    EXPECT_EQ(store.names(), (std::vector<std::string>{"a", "b", "c", "d"}));
    EXPECT_EQ(store.read_f32("a", {4, 4}), a);
    EXPECT_EQ(store.read_f32("b", {4}), b);
    EXPECT_EQ(store.read_f32("c", {50}), c);
    EXPECT_EQ(store.read_f32("d", {8}), d);
}

TEST_F(SafetensorsTest, SmallDataGiveOneFileAndLayoutSwitchesRemoveStaleFiles) {
    const std::vector<float> a(16, 1.0f), b(16, 2.0f);
    const std::string        out = path("m");
    write_safetensors_sharded(out, "adapter", {{"a", {16}, a.data()}, {"b", {16}, b.data()}}, 64);
    EXPECT_TRUE(fs::exists(out + "/adapter-00001-of-00002.safetensors"));
    EXPECT_TRUE(fs::exists(out + "/adapter.safetensors.index.json"));

    write_safetensors_sharded(out, "adapter", {{"a", {16}, a.data()}, {"b", {16}, b.data()}}, 128);
    EXPECT_TRUE(fs::exists(out + "/adapter.safetensors"));
    EXPECT_FALSE(fs::exists(out + "/adapter.safetensors.index.json"));
    EXPECT_EQ(TensorStore::open_dir(out, "adapter").read_f32("b", {16}), b);

    write_safetensors_sharded(out, "adapter", {{"a", {16}, a.data()}, {"b", {16}, b.data()}}, 64);
    EXPECT_FALSE(fs::exists(out + "/adapter.safetensors"));
    EXPECT_EQ(TensorStore::open_dir(out, "adapter").read_f32("a", {16}), a);
}

TEST_F(SafetensorsTest, WritingIsAtomicAndReplaces) {
    const std::vector<float> a = {1, 2}, b = {3, 4, 5};
    const std::string        file = path("w.safetensors");
    write_safetensors(file, {{"a", {2}, a.data()}});
    write_safetensors(file, {{"b", {3}, b.data()}});
    EXPECT_EQ(folder_entries(), std::vector<std::string>{"w.safetensors"});  // no .tmp left
    const TensorStore store = TensorStore::open_file(file);
    EXPECT_EQ(store.names(), std::vector<std::string>{"b"});
    EXPECT_EQ(store.read_f32("b", {3}), b);

    write_file_atomic(path("t.txt"), "hello");
    write_file_atomic(path("t.txt"), "bye");
    EXPECT_EQ(read_file(path("t.txt")), "bye");
    EXPECT_EQ(folder_entries(), (std::vector<std::string>{"t.txt", "w.safetensors"}));
}

TEST_F(SafetensorsTest, FailedWritesLeaveNothingBehind) {
    const std::vector<int32_t> ints = {1};
    EXPECT_THROW(write_safetensors(path("i.safetensors"),
                                   {{"i", {1}, reinterpret_cast<const float *>(ints.data()), DType::I32}}),
                 InputError);
    const float one = 1.0f;
    EXPECT_THROW(write_safetensors(path("d.safetensors"), {{"x", {1}, &one}, {"x", {1}, &one}}), InputError);
    EXPECT_THROW(write_safetensors(path("n.safetensors"), {{"x", {-1, 0}, &one}}), InputError);
    EXPECT_TRUE(folder_entries().empty());
    try {
        write_file_atomic(path("missing/f.txt"), "x");
        ADD_FAILURE() << "no RuntimeFailure";
    } catch (const RuntimeFailure & e) {
        EXPECT_NE(std::string(e.what()).find("missing/f.txt"), std::string::npos) << e.what();
    }
    EXPECT_THROW(read_file(path("nope")), InputError);
}

// ---- bad input ----------------------------------------------------------------------------

TEST_F(SafetensorsTest, RejectsTooShortFiles) {
    const std::string empty = write_raw("empty.safetensors", "");
    expect_input_error([&] { SafetensorsFile f(empty); }, {"empty.safetensors"});
    const std::string five = write_raw("five.safetensors", "abcde");
    expect_input_error([&] { SafetensorsFile f(five); }, {"five.safetensors"});
    expect_input_error([&] { SafetensorsFile f(path("absent.safetensors")); }, {"absent.safetensors"});
    expect_input_error([&] { SafetensorsFile f(dir_.string()); }, {dir_.string()});
}

TEST_F(SafetensorsTest, RejectsBadHeaders) {
    const std::string past = write_st("past.safetensors", "{}", "", 1000);
    expect_input_error([&] { SafetensorsFile f(past); }, {"past.safetensors", "1000"});
    const std::string huge = write_st("huge.safetensors", "{}", "", UINT64_MAX - 1);
    expect_input_error([&] { SafetensorsFile f(huge); }, {"huge.safetensors"});
    const std::string not_json = write_st("notjson.safetensors", "{\"a\": ");
    expect_input_error([&] { SafetensorsFile f(not_json); }, {"notjson.safetensors", "JSON"});
    const std::string array = write_st("array.safetensors", "[1, 2]");
    expect_input_error([&] { SafetensorsFile f(array); }, {"array.safetensors", "object"});
    const std::string meta = write_st("meta.safetensors", R"({"__metadata__": {"a": 1}})");
    expect_input_error([&] { SafetensorsFile f(meta); }, {"meta.safetensors", "__metadata__"});
}

TEST_F(SafetensorsTest, RejectsBadTensorEntries) {
    struct Case {
        const char * header;
        size_t       data_bytes;
        const char * expect;  // a part of the message besides the file and tensor names
    };
    const Case cases[] = {
        {R"({"w": {"dtype": "F8", "shape": [1], "data_offsets": [0, 1]}})", 1, "F8"},
        {R"({"w": {"dtype": 7, "shape": [1], "data_offsets": [0, 1]}})", 1, "dtype"},
        {R"({"w": {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, 64]}})", 64,
         "shape [4, 8] x F32 needs 128 bytes but data_offsets give 64"},
        {R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8, "past the end"},
        {R"({"w": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}})", 16, "shape"},
        {R"({"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}})", 4, "shape"},
        {R"({"w": {"dtype": "F32", "shape": "4", "data_offsets": [0, 16]}})", 16, "shape"},
        {R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": "0-16"}})", 16, "data_offsets"},
        {R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, "16"]}})", 16, "data_offsets"},
        {R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8, 16]}})", 16, "data_offsets"},
        {R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [16, 0]}})", 16, "data_offsets"},
        {R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, -16]}})", 16, "data_offsets"},
        {R"({"w": {"dtype": "F32", "shape": [4]}})", 16, "data_offsets"},
        {R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16], "extra": 1}})", 16, "extra"},
        {R"({"w": [1, 2]})", 0, "object"},
        {R"({"w": {"dtype": "U8", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", 0, "too large"},
        {R"({"w": {"dtype": "F64", "shape": [4294967296, 1073741824], "data_offsets": [0, 0]}})", 0, "too large"},
    };
    int i = 0;
    for (const Case & c : cases) {
        const std::string name = "bad" + std::to_string(i++) + ".safetensors";
        const std::string file = write_st(name, c.header, std::string(c.data_bytes, '\0'));
        SCOPED_TRACE(c.header);
        expect_input_error([&] { SafetensorsFile f(file); }, {name, "'w'", c.expect});
    }
}

// As the reference reader (safetensors' Rust crate) checks a file: sorted by data offsets, each
// tensor begins where the one before ends (InvalidOffset), and the last ends the file
// (MetadataIncompleteBuffer). Empty tensors too sit at the current offset.
TEST_F(SafetensorsTest, DataSectionIsTheTensorsBackToBack) {
    const std::string overlap = write_st("overlap.safetensors",
                                         R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                             "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
                                         std::string(24, '\0'));
    expect_input_error([&] { SafetensorsFile f(overlap); }, {"overlap.safetensors", "'a'", "'b'", "overlap"});

    const std::string gap = write_st("gap.safetensors",
                                     R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                         "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
                                     std::string(12, '\0'));
    expect_input_error([&] { SafetensorsFile f(gap); }, {"gap.safetensors", "'b'", "data offset 8", "end at 4"});
    const std::string leading = write_st("leading.safetensors",
                                         R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                                         std::string(8, '\0'));
    expect_input_error([&] { SafetensorsFile f(leading); }, {"leading.safetensors", "'a'", "data offset 4"});
    const std::string trailing = write_st("trailing.safetensors",
                                          R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})",
                                          std::string(4, '\0') + std::string(8000, 'g'));
    expect_input_error([&] { SafetensorsFile f(trailing); }, {"trailing.safetensors", "8000 bytes after the last"});
    const std::string empty_inside = write_st("empty_inside.safetensors",
                                              R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                                  "e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})",
                                              std::string(8, '\0'));
    expect_input_error([&] { SafetensorsFile f(empty_inside); }, {"empty_inside.safetensors", "'e'"});

    const std::string good = write_st("good.safetensors",
                                      R"({"b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
                                          "e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]},
                                          "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                          "z": {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]}})",
                                      le_bytes<float>({1.0f, 2.0f}));
    SafetensorsFile f(good);
    ASSERT_EQ(f.tensors().size(), 4u);
    EXPECT_EQ(f.tensors()[0].name, "a");
    EXPECT_EQ(TensorStore::open_file(good).read_f32("b", {1}), std::vector<float>{2.0f});
}

TEST_F(SafetensorsTest, ReadErrorsNameFileAndTensor) {
    const std::vector<float> w(32, 1.0f);
    const std::vector<int32_t> ints = {1, 2};
    const std::string file = path("model.safetensors");
    write_safetensors(file, {{"model.layers.0.mlp.up_proj.weight", {4, 8}, w.data()}});
    const TensorStore store = TensorStore::open_file(file);
    expect_input_error([&] { store.read_f32("model.layers.0.mlp.up_proj.weight", {8, 4}); },
                       {"model.safetensors", "model.layers.0.mlp.up_proj.weight", "[4, 8]", "[8, 4]"});
    expect_input_error([&] { store.read_f32("missing.weight", {1}); }, {"missing.weight", "model.safetensors"});
    expect_input_error([&] { store.info("missing.weight"); }, {"'missing.weight' not found"});

    const std::string int_file =
        write_st("int.safetensors", R"({"i": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}})",
                 le_bytes<int32_t>({1, 2}));
    expect_input_error([&] { TensorStore::open_file(int_file).read_f32_any("i", nullptr); },
                       {"int.safetensors", "'i'", "I32"});
}

TEST_F(SafetensorsTest, OpenDirErrors) {
    expect_input_error([&] { TensorStore::open_dir(dir_.string()); },
                       {"no model.safetensors or model.safetensors.index.json in", dir_.string()});

    const std::vector<float> a = {1, 2};
    write_safetensors(path("s1.safetensors"), {{"a", {2}, a.data()}});

    write_raw("model.safetensors.index.json", R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})");
    expect_input_error([&] { TensorStore::open_dir(dir_.string()); },
                       {"model.safetensors.index.json", "'b'", "s2.safetensors"});

    write_raw("model.safetensors.index.json", R"({"weight_map": {"a": "s1.safetensors", "z": "s1.safetensors"}})");
    expect_input_error([&] { TensorStore::open_dir(dir_.string()); },
                       {"model.safetensors.index.json", "'z'", "s1.safetensors"});

    write_raw("model.safetensors.index.json", R"({"weight_map": {"a": "../s1.safetensors"}})");
    expect_input_error([&] { TensorStore::open_dir(dir_.string()); }, {"model.safetensors.index.json", "'a'"});

    write_raw("model.safetensors.index.json", R"({"weight_map": ["a"]})");
    expect_input_error([&] { TensorStore::open_dir(dir_.string()); }, {"model.safetensors.index.json"});

    write_raw("model.safetensors.index.json", "not json");
    expect_input_error([&] { TensorStore::open_dir(dir_.string()); }, {"model.safetensors.index.json"});

    // The same name in two shards.
    write_safetensors(path("s2.safetensors"), {{"a", {2}, a.data()}});
    write_raw("model.safetensors.index.json", R"({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}})");
    expect_input_error([&] { TensorStore::open_dir(dir_.string()); }, {"'a'", "s1.safetensors", "s2.safetensors"});

    // The index is fine; a missing tensor names the index.
    write_raw("model.safetensors.index.json", R"({"weight_map": {"a": "s1.safetensors"}})");
    const TensorStore store = TensorStore::open_dir(dir_.string());
    EXPECT_EQ(store.read_f32("a", {2}), a);
    expect_input_error([&] { store.info("q"); }, {"'q'", "model.safetensors.index.json"});
}

// Truncated and randomly corrupted copies of a valid file either open or throw InputError;
// nothing else escapes (run under sanitizers to also catch memory errors).
TEST_F(SafetensorsTest, CorruptFilesOnlyThrowInputError) {
    const std::vector<float> w = {1, 2, 3, 4, 5, 6};
    const std::string        good = path("good.safetensors");
    write_safetensors(good, {{"a", {2, 3}, w.data(), DType::BF16}, {"b", {6}, w.data()}}, {{"k", "v"}});
    const std::string bytes = read_file(good);

    std::mt19937 rng(12345);
    for (int trial = 0; trial < 2000; ++trial) {
        std::string mutated = bytes;
        if (trial < static_cast<int>(bytes.size())) {
            mutated.resize(static_cast<size_t>(trial));
        } else {
            const int flips = 1 + static_cast<int>(rng() % 4);
            for (int k = 0; k < flips; ++k) mutated[rng() % mutated.size()] = static_cast<char>(rng() & 0xFF);
        }
        const std::string file = write_raw("mut.safetensors", mutated);
        try {
            const TensorStore store = TensorStore::open_file(file);
            for (const std::string & name : store.names()) {
                try {
                    std::vector<int64_t> shape;
                    store.read_f32_any(name, &shape);
                } catch (const InputError &) {
                }
            }
        } catch (const InputError & e) {
            EXPECT_NE(std::string(e.what()).find("mut.safetensors"), std::string::npos) << e.what();
        }
    }
}
