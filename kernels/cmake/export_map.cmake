# The shared library exports exactly the functions declared in sparsekit.h:
# a linker version script lists them, everything else (the internal sk_*
# helpers and per-ISA kernels) stays local. Included by CMakeLists.txt when
# SK_SHARED is on; ELF targets (GNU ld, gold, lld) only.
if(APPLE OR WIN32)
  message(FATAL_ERROR "SK_SHARED needs an ELF linker (Linux, BSD); build the static library")
endif()
list(JOIN SK_API_FUNCTIONS ";\n    " SK_MAP_LIST)
set(SK_MAP ${CMAKE_CURRENT_BINARY_DIR}/sparsekit.map)
file(WRITE ${SK_MAP}.tmp "{\n  global:\n    ${SK_MAP_LIST};\n  local: *;\n};\n")
configure_file(${SK_MAP}.tmp ${SK_MAP} COPYONLY)  # rewritten only when it changes
target_link_options(sparsekit PRIVATE "LINKER:--version-script=${SK_MAP}")
set_property(TARGET sparsekit APPEND PROPERTY LINK_DEPENDS ${SK_MAP})
