#pragma once

#include <string_view>

namespace conv::cmd {

// The console page (src/console/console.html), compiled in: `serve --console` serves
// it at GET /. A self-contained HTML document: no file or network fetch at run time.
std::string_view ConsolePage();

}  // namespace conv::cmd
