#include "core/communicator.h"

#include <algorithm>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#if PAFT_HAVE_MPI
#include <mpi.h>
#endif

namespace paft {

void Communicator::broadcast(std::string & text, int root) {
    uint64_t length = text.size();
    broadcast(&length, sizeof length, root);
    text.resize(length);
    broadcast(text.data(), length, root);
}

bool Communicator::all(bool ok) {
    double v = ok ? 0.0 : 1.0;  // failures counted
    sum(&v, 1);
    return v == 0.0;
}

namespace {

class LocalCommunicator final : public Communicator {
public:
    int                           rank() const override { return 0; }
    int                           size() const override { return 1; }
    void                          sum(float *, size_t) override {}
    void                          sum(double *, size_t) override {}
    void all_gather(const float * mine, size_t n, float * all) override { std::copy(mine, mine + n, all); }
    std::vector<std::string> all_gather(const std::string & mine) override { return {mine}; }
    void                          broadcast(void *, size_t, int root) override { check_root(root); }
    void                          barrier() override {}
    std::unique_ptr<Communicator> split(int) override { return std::make_unique<LocalCommunicator>(); }

private:
    static void check_root(int root) {
        if (root != 0) {
            throw std::invalid_argument("broadcast: root " + std::to_string(root) + " outside a job of 1 rank");
        }
    }
};

#if PAFT_HAVE_MPI

// Values gathered per piece: bounds the receive buffer at size * kPiece values.
constexpr size_t kPiece = (size_t) 1 << 20;
// all_gather of floats in a single call up to this many values a rank (MPI's counts are ints).
size_t one_call_limit = (size_t) INT32_MAX;

template <class T>
MPI_Datatype mpi_type();
template <>
MPI_Datatype mpi_type<float>() {
    return MPI_FLOAT;
}
template <>
MPI_Datatype mpi_type<double>() {
    return MPI_DOUBLE;
}

void check(int rc, const char * what) {
    if (rc != MPI_SUCCESS) {
        char text[MPI_MAX_ERROR_STRING];
        int  len = 0;
        MPI_Error_string(rc, text, &len);
        throw std::runtime_error(std::string("MPI ") + what + ": " + std::string(text, (size_t) len));
    }
}

class MpiCommunicator final : public Communicator {
public:
    explicit MpiCommunicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
        check(MPI_Comm_rank(comm_, &rank_), "Comm_rank");
        check(MPI_Comm_size(comm_, &size_), "Comm_size");
    }
    ~MpiCommunicator() override {
        if (owned_) {
            MPI_Comm_free(&comm_);
        }
    }
    int  rank() const override { return rank_; }
    int  size() const override { return size_; }
    void sum(float * data, size_t n) override { ordered_sum(data, n); }
    void sum(double * data, size_t n) override { ordered_sum(data, n); }
    void all_gather(const float * mine, size_t n, float * all) override {
        if (n <= one_call_limit) {  // one call: the usual case (a LoRA's gradients)
            check(MPI_Allgather(mine, (int) n, MPI_FLOAT, all, (int) n, MPI_FLOAT, comm_), "Allgather");
            return;
        }
        // Counts are ints: pieces of kPiece values, each rank's piece placed at its offset.
        std::vector<float> part((size_t) size_ * kPiece);
        for (size_t at = 0; at < n; at += kPiece) {
            const size_t count = std::min(kPiece, n - at);
            check(MPI_Allgather(mine + at, (int) count, MPI_FLOAT, part.data(), (int) count, MPI_FLOAT, comm_),
                  "Allgather");
            for (int r = 0; r < size_; r++) {
                std::copy_n(part.data() + (size_t) r * count, count, all + (size_t) r * n + at);
            }
        }
    }
    std::vector<std::string> all_gather(const std::string & mine) override {
        std::vector<uint64_t> lengths((size_t) size_);
        const uint64_t        length = mine.size();
        check(MPI_Allgather(&length, 1, MPI_UINT64_T, lengths.data(), 1, MPI_UINT64_T, comm_), "Allgather");
        std::vector<std::string> all((size_t) size_);
        for (int r = 0; r < size_; r++) {
            all[(size_t) r].resize(lengths[(size_t) r]);
        }
        // Rounds of at most kPiece bytes from each rank (Allgatherv's counts are ints).
        std::vector<int> counts((size_t) size_), offsets((size_t) size_);
        std::string      round;
        for (size_t at = 0;; at += kPiece) {
            int total = 0;
            for (int r = 0; r < size_; r++) {
                const uint64_t have = lengths[(size_t) r];
                counts[(size_t) r]  = (int) (at < have ? std::min<uint64_t>(kPiece, have - at) : 0);
                offsets[(size_t) r] = total;
                total += counts[(size_t) r];
            }
            if (total == 0) {
                break;
            }
            round.resize((size_t) total);
            const int mine_count = counts[(size_t) rank_];
            check(MPI_Allgatherv(mine.data() + (mine_count ? at : 0), mine_count, MPI_BYTE, round.data(),
                                 counts.data(), offsets.data(), MPI_BYTE, comm_),
                  "Allgatherv");
            for (int r = 0; r < size_; r++) {
                std::copy_n(round.data() + offsets[(size_t) r], counts[(size_t) r], all[(size_t) r].data() + at);
            }
        }
        return all;
    }
    void broadcast(void * bytes, size_t n, int root) override {
        if (root < 0 || root >= size_) {
            throw std::invalid_argument("broadcast: root " + std::to_string(root) + " outside a job of " +
                                        std::to_string(size_) + " ranks");
        }
        auto * p = static_cast<char *>(bytes);
        for (size_t at = 0; at < n; at += kPiece) {  // counts are ints
            check(MPI_Bcast(p + at, (int) std::min(kPiece, n - at), MPI_BYTE, root, comm_), "Bcast");
        }
    }
    void barrier() override { check(MPI_Barrier(comm_), "Barrier"); }
    std::unique_ptr<Communicator> split(int color) override {
        MPI_Comm part;
        check(MPI_Comm_split(comm_, color, rank_, &part), "Comm_split");
        return std::make_unique<MpiCommunicator>(part, true);
    }

private:
    template <class T>
    void ordered_sum(T * data, size_t n) {
        if (size_ == 1) {
            return;
        }
        std::vector<T> all;
        for (size_t at = 0; at < n; at += kPiece) {
            const size_t count = std::min(kPiece, n - at);
            all.resize(count * (size_t) size_);
            check(MPI_Allgather(data + at, (int) count, mpi_type<T>(), all.data(), (int) count, mpi_type<T>(), comm_),
                  "Allgather");
            for (size_t i = 0; i < count; i++) {
                T s = all[i];
                for (int r = 1; r < size_; r++) {
                    s += all[(size_t) r * count + i];
                }
                data[at + i] = s;
            }
        }
    }

    MPI_Comm comm_;
    bool     owned_;
    int      rank_ = 0, size_ = 1;
};

// Whether an MPI launcher started this process: Open MPI's mpirun, PMIx (Slurm's srun with
// --mpi=pmix), or PMI-1/2 launchers.
bool launched_by_mpi() {
    for (const char * var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"}) {
        if (std::getenv(var)) {
            return true;
        }
    }
    return false;
}

// MPI's world for the life of the program: initialised on first use, finalised at exit.
struct MpiWorld {
    std::unique_ptr<MpiCommunicator> comm;
    MpiWorld() {
        int provided = 0;
        check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "Init_thread");
        // Errors come back as codes (check() turns them into exceptions) instead of aborting.
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        comm = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, false);
    }
    ~MpiWorld() {
        comm.reset();
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) {
            MPI_Finalize();
        }
    }
};

#endif

}  // namespace

void set_all_gather_one_call_limit(size_t values) {
#if PAFT_HAVE_MPI
    one_call_limit = std::min(values, (size_t) INT32_MAX);
#endif
    (void) values;
}

std::unique_ptr<Communicator> make_local_communicator() { return std::make_unique<LocalCommunicator>(); }

bool mpi_available() {
#if PAFT_HAVE_MPI
    return true;
#else
    return false;
#endif
}

void abort_job(int code) {
#if PAFT_HAVE_MPI
    if (launched_by_mpi() && world().size() > 1) {
        MPI_Abort(MPI_COMM_WORLD, code);
    }
#endif
    (void) code;
}

int local_ranks() {
    const char * v = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    const int    n = v ? std::atoi(v) : 1;
    return n > 0 ? n : 1;
}

Communicator & world() {
#if PAFT_HAVE_MPI
    if (launched_by_mpi()) {
        static MpiWorld mpi;
        return *mpi.comm;
    }
#endif
    static LocalCommunicator local;
    return local;
}

}  // namespace paft
