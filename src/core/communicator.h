// The processes (ranks) working on one job, as MPI sees them: `mpirun -np N paft ...` or `srun
// paft ...` starts N copies of the program, and each learns its rank and the job's size here.
// Without MPI (not built in, or not started by an MPI launcher) the job is this one process, and
// every operation below is the identity.
//
// Determinism: sum() adds the ranks' values in rank order, ((r0 + r1) + r2) + ..., on every rank
// and in every run, so a job's results do not depend on message timing or on the MPI library's
// choice of reduction algorithm (MPI_Allreduce promises neither). Each rank gathers the others'
// values in pieces and adds them itself: a rank receives (size - 1) * n values per call.
//
// Threads: only the thread that created the communicator calls it (MPI_THREAD_FUNNELED); the
// OpenMP threads inside a rank never do.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace paft {

class Communicator {
public:
    virtual ~Communicator() = default;

    virtual int rank() const = 0;
    virtual int size() const = 0;

    // data[0, n) on every rank becomes the sum over the ranks, added in rank order.
    virtual void sum(float * data, size_t n)  = 0;
    virtual void sum(double * data, size_t n) = 0;
    // mine[0, n) of every rank, in rank order, into all[0, size * n) on every rank.
    virtual void all_gather(const float * mine, size_t n, float * all) = 0;
    // Every rank's bytes (any length, each rank its own), in rank order, on every rank.
    virtual std::vector<std::string> all_gather(const std::string & mine) = 0;
    // bytes[0, n) of rank `root` copied to every rank.
    virtual void broadcast(void * bytes, size_t n, int root) = 0;
    virtual void barrier()                                   = 0;
    // The ranks that pass the same color, as a communicator of their own, ordered by their rank
    // here (every rank must call it).
    virtual std::unique_ptr<Communicator> split(int color) = 0;

    // `text` of rank `root` on every rank (any length).
    void broadcast(std::string & text, int root);

    // The logical AND of `ok` over the ranks: every rank learns whether all succeeded (an input
    // error found on one rank stops them all, with no rank left waiting).
    bool all(bool ok);
};

// The job's communicator: MPI's world when this build has MPI and an MPI launcher started the
// process (its environment says so), else the single process. Made on first use; MPI is shut down
// at exit.
Communicator & world();

// A communicator of one process (tests; the single-process job).
std::unique_ptr<Communicator> make_local_communicator();

// Under MPI with more than one rank: stops every rank of the job with exit code `code` (after a
// rank failed on its own, so that no other is left waiting in a collective). Otherwise returns.
void abort_job(int code);

// Ranks of this job on this machine (Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE), 1 outside MPI: the
// default thread count divides the cores among them.
int local_ranks();

// Tests: the values a rank above which all_gather of floats goes in pieces of 2^20 (default and
// most 2^31 - 1, as MPI's counts are ints).
void set_all_gather_one_call_limit(size_t values);

// Whether this build can run under MPI (found at configure time).
bool mpi_available();

}  // namespace paft
