# The shared library exports exactly the functions declared in sparsekit.h:
# a linker version script lists them, everything else (the internal sk_*
# helpers and per-ISA kernels) stays local. Included by CMakeLists.txt when
# SK_SHARED is on; ELF targets (GNU ld, gold, lld) only.
if(APPLE OR WIN32)
  message(FATAL_ERROR "SK_SHARED needs an ELF linker (Linux, BSD); build the static library")
endif()
file(READ ${CMAKE_CURRENT_SOURCE_DIR}/include/sparsekit.h SK_HEADER)
string(REGEX REPLACE "/\\*([^*]|\\*+[^*/])*\\*+/" "" SK_HEADER "${SK_HEADER}")  # comments
string(REGEX MATCHALL "sk_[a-z0-9_]+[ ]*\\(" SK_API_CALLS "${SK_HEADER}")
set(SK_API_FUNCTIONS "")
foreach(call ${SK_API_CALLS})
  string(REGEX REPLACE "[ (]" "" fn "${call}")
  list(APPEND SK_API_FUNCTIONS ${fn})
endforeach()
list(REMOVE_DUPLICATES SK_API_FUNCTIONS)
list(LENGTH SK_API_FUNCTIONS SK_API_COUNT)
if(SK_API_COUNT LESS 20)
  message(FATAL_ERROR "export_map.cmake found only ${SK_API_COUNT} functions in sparsekit.h")
endif()
list(JOIN SK_API_FUNCTIONS ";\n    " SK_MAP_LIST)
set(SK_MAP ${CMAKE_CURRENT_BINARY_DIR}/sparsekit.map)
file(WRITE ${SK_MAP}.tmp "{\n  global:\n    ${SK_MAP_LIST};\n  local: *;\n};\n")
configure_file(${SK_MAP}.tmp ${SK_MAP} COPYONLY)  # rewritten only when it changes
target_link_options(sparsekit PRIVATE "LINKER:--version-script=${SK_MAP}")
set_property(TARGET sparsekit APPEND PROPERTY LINK_DEPENDS ${SK_MAP})
