// Memory of its own for a frozen weight matrix: anonymous pages, with transparent huge pages
// advised (2 MiB pages where the kernel has them).
//
// Why not the file mapping: on this project's reference machine (a 2-core VM whose kernel runs
// DAMON's pageout of cold page-cache pages, and whose page faults go through the hypervisor) a
// model's weights read in place from the safetensors mapping decode at a fraction of the speed of
// the same bytes in anonymous memory, which nothing pages out without swap (TinyLlama-1.1B, 2
// threads: bf16 13.8 -> 20.0 tokens/s, f32 5.0 -> 12.7; docs/PRECISION.md). Why huge pages:
// filling them faults 512 times less often (copying 4.4 GB: 21 s in 4 KiB pages, 2-9 s in huge
// ones). On a machine without transparent huge pages the advice is ignored and the buffer is
// plain anonymous memory.
#pragma once

#include <cstddef>
#include <cstdint>

namespace paft {

class PageBuffer {
public:
    PageBuffer() = default;
    explicit PageBuffer(size_t bytes);  // zero-filled; throws std::bad_alloc when mmap fails
    ~PageBuffer();
    PageBuffer(PageBuffer && other) noexcept;
    PageBuffer & operator=(PageBuffer && other) noexcept;
    PageBuffer(const PageBuffer &)             = delete;
    PageBuffer & operator=(const PageBuffer &) = delete;

    uint8_t *       data() { return data_; }
    const uint8_t * data() const { return data_; }
    size_t          size() const { return size_; }
    bool            empty() const { return size_ == 0; }

    // A buffer holding a copy of src's n bytes, copied by the OpenMP threads in 2 MiB pieces (each
    // thread faults in its own pages).
    static PageBuffer copy_of(const void * src, size_t n);

private:
    uint8_t * data_     = nullptr;
    size_t    size_     = 0;
    size_t    reserved_ = 0;  // the mapping's length (size rounded up to whole huge pages)
};

}  // namespace paft
