// The communicator (src/core/communicator.h). In one process: the single-process job. Under
// `mpirun -np 3` (tests/CMakeLists.txt runs this program so, with --gtest_filter='Mpi*', when
// Open MPI was found): sums added in rank order, on every rank the same, across the gather's
// pieces; broadcast; split into groups; all(). The Mpi tests skip in a single process.
#include "core/communicator.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

using namespace paft;

TEST(Communicator, SingleProcessIsTheIdentity) {
    auto c = make_local_communicator();
    EXPECT_EQ(c->rank(), 0);
    EXPECT_EQ(c->size(), 1);
    std::vector<float>  f = {1.5f, -2.0f};
    std::vector<double> d = {3.25};
    c->sum(f.data(), f.size());
    c->sum(d.data(), d.size());
    EXPECT_EQ(f, (std::vector<float>{1.5f, -2.0f}));
    EXPECT_EQ(d, (std::vector<double>{3.25}));
    char text[] = "abc";
    c->broadcast(text, 3, 0);
    EXPECT_STREQ(text, "abc");
    EXPECT_THROW(c->broadcast(text, 3, 1), std::invalid_argument);
    EXPECT_TRUE(c->all(true));
    EXPECT_FALSE(c->all(false));
    EXPECT_EQ(c->all_gather(std::string("bytes")), (std::vector<std::string>{"bytes"}));
    std::string long_text = "kept";
    c->broadcast(long_text, 0);
    EXPECT_EQ(long_text, "kept");
    auto part = c->split(7);
    EXPECT_EQ(part->size(), 1);
    c->barrier();
}

TEST(Communicator, WorldWithoutALauncherIsOneProcess) {
    if (world().size() > 1) {
        GTEST_SKIP() << "running under an MPI launcher";
    }
    EXPECT_EQ(world().rank(), 0);
}

namespace {

// Rank r's value at i: chosen so that the order of the additions shows. With three ranks,
// (1e8 + -1e8) + 1 = 1 in f32, while (-1e8 + 1) + 1e8 = 0 and (1e8 + 1) + -1e8 = 0.
float value_at(int rank, size_t i) {
    static const float kThree[] = {1e8f, -1e8f, 1.0f};
    return kThree[rank % 3] * (float) (1 + i % 7);
}

// GTEST_SKIP returns from the function it is in, so this is a macro: the test itself returns.
#define SKIP_UNLESS_RANKS(want)                                                                       \
    if (world().size() != (want))                                                                     \
    GTEST_SKIP() << "needs mpirun -np " << (want) << " (this job has " << world().size() << " rank(s))"

}  // namespace

TEST(MpiCommunicator, SumsInRankOrderOnEveryRank) {
    SKIP_UNLESS_RANKS(3);
    Communicator & w = world();
    // More values than one piece of the gather (2^20), so the pieces' seams are crossed.
    const size_t       n = ((size_t) 1 << 20) + 5;
    std::vector<float> f(n);
    for (size_t i = 0; i < n; i++) {
        f[i] = value_at(w.rank(), i);
    }
    w.sum(f.data(), n);
    for (size_t i = 0; i < n; i++) {
        const float want = (value_at(0, i) + value_at(1, i)) + value_at(2, i);
        ASSERT_EQ(f[i], want) << "rank " << w.rank() << " value " << i;
    }
    std::vector<double> d = {1e17 * (w.rank() == 0) - 1e17 * (w.rank() == 1) + 1.0 * (w.rank() == 2)};
    w.sum(d.data(), 1);
    EXPECT_EQ(d[0], 1.0);
}

TEST(MpiCommunicator, BroadcastSplitAndAll) {
    SKIP_UNLESS_RANKS(3);
    Communicator & w = world();
    std::string text = w.rank() == 1 ? "from rank one" : "xxxxxxxxxxxxx";
    w.broadcast(text.data(), text.size(), 1);
    EXPECT_EQ(text, "from rank one");

    // Ranks 0 and 2 (color 0) and rank 1 (color 1).
    auto part = w.split(w.rank() % 2);
    EXPECT_EQ(part->size(), w.rank() == 1 ? 1 : 2);
    EXPECT_EQ(part->rank(), w.rank() == 2 ? 1 : 0);
    std::vector<float> v = {(float) (w.rank() + 1)};
    part->sum(v.data(), 1);
    EXPECT_EQ(v[0], w.rank() == 1 ? 2.0f : 4.0f);

    EXPECT_TRUE(w.all(true));
    EXPECT_FALSE(w.all(w.rank() != 2));
    w.barrier();
}

TEST(MpiCommunicator, GathersFloatsInPiecesAndBytesOfAnyLength) {
    SKIP_UNLESS_RANKS(3);
    Communicator & w = world();
    // Floats: one call, then (with the limit lowered) pieces of 2^20 values, the same result.
    const size_t       n = ((size_t) 1 << 21) + 3;
    std::vector<float> mine(n), one_call((size_t) 3 * n), pieces((size_t) 3 * n);
    for (size_t i = 0; i < n; i++) {
        mine[i] = (float) (w.rank() * 10000000 + (int) (i % 1000003));
    }
    w.all_gather(mine.data(), n, one_call.data());
    set_all_gather_one_call_limit(1000);
    w.all_gather(mine.data(), n, pieces.data());
    set_all_gather_one_call_limit((size_t) -1);
    for (int r = 0; r < 3; r++) {
        for (size_t i = 0; i < n; i += 4099) {
            ASSERT_EQ(one_call[(size_t) r * n + i], (float) (r * 10000000 + (int) (i % 1000003))) << r << " " << i;
        }
    }
    EXPECT_EQ(one_call, pieces);

    // Bytes: rank 1 sends nothing, rank 2 more than one piece (2^20 bytes), with zero bytes inside.
    std::string text;
    if (w.rank() == 0) {
        text = "rank zero";
    } else if (w.rank() == 2) {
        text.assign(((size_t) 1 << 20) * 2 + 17, 'x');
        text[5] = '\0';
        text.back() = 'z';
    }
    const std::vector<std::string> all = w.all_gather(text);
    ASSERT_EQ(all.size(), 3u);
    EXPECT_EQ(all[0], "rank zero");
    EXPECT_EQ(all[1], "");
    ASSERT_EQ(all[2].size(), ((size_t) 1 << 21) + 17);
    EXPECT_EQ(all[2][5], '\0');
    EXPECT_EQ(all[2].back(), 'z');
    EXPECT_EQ(all[2][1 << 20], 'x');

    // A string broadcast: its length travels too.
    std::string message = w.rank() == 2 ? std::string(3000000, 'm') + "end" : "short";
    w.broadcast(message, 2);
    EXPECT_EQ(message.size(), 3000003u);
    EXPECT_EQ(message.substr(2999998), "mmend");
}
