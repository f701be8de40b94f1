#include "core/memory.h"

#include <fstream>
#include <sstream>
#include <string>

namespace paft {

uint64_t peak_resident_bytes() {
    std::ifstream in("/proc/self/status");
    std::string   line;
    while (std::getline(in, line)) {
        if (line.rfind("VmHWM:", 0) == 0) {
            std::istringstream fields(line.substr(6));
            uint64_t           kib = 0;
            fields >> kib;
            return kib * 1024;
        }
    }
    return 0;
}

bool reset_peak_resident() {
    std::ofstream out("/proc/self/clear_refs");
    out << "5";
    out.flush();
    return (bool) out;
}

}  // namespace paft
