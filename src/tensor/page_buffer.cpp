#include "tensor/page_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <utility>

namespace paft {

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
}

PageBuffer::PageBuffer(size_t bytes) {
    if (bytes == 0) return;
    // Not rounded up to whole huge pages: the kernel puts huge pages where whole 2 MiB ranges of
    // the mapping are (it aligns large anonymous mappings to them), the tail gets small ones, and
    // no matrix costs up to 2 MiB more than its bytes.
    const size_t page     = (size_t) ::sysconf(_SC_PAGESIZE);
    const size_t reserved = (bytes + page - 1) / page * page;
    void *       p        = ::mmap(nullptr, reserved, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    // Advice only: where it is refused the pages are ordinary ones.
    ::madvise(p, reserved, MADV_HUGEPAGE);
    data_     = static_cast<uint8_t *>(p);
    size_     = bytes;
    reserved_ = reserved;
}

PageBuffer::~PageBuffer() {
    if (data_ != nullptr) ::munmap(data_, reserved_);
}

PageBuffer::PageBuffer(PageBuffer && other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)),
      reserved_(std::exchange(other.reserved_, 0)) {}

PageBuffer & PageBuffer::operator=(PageBuffer && other) noexcept {
    if (this != &other) {
        if (data_ != nullptr) ::munmap(data_, reserved_);
        data_     = std::exchange(other.data_, nullptr);
        size_     = std::exchange(other.size_, 0);
        reserved_ = std::exchange(other.reserved_, 0);
    }
    return *this;
}

PageBuffer PageBuffer::copy_of(const void * src, size_t n) {
    PageBuffer    out(n);
    const auto *  from   = static_cast<const uint8_t *>(src);
    const int64_t pieces = (int64_t) ((n + kHugePage - 1) / kHugePage);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < pieces; i++) {
        const size_t begin = (size_t) i * kHugePage, len = std::min(kHugePage, n - begin);
        std::memcpy(out.data_ + begin, from + begin, len);
    }
    return out;
}

}  // namespace paft
